"""A sender number belongs to one shop: inbound texts find their shop by the number they
were sent to. The database holds it (``uq_shops_sms_from_number``); the deployment's
number is shared only by the shops without one of their own, so no shop may claim it; and
an owner who hits either rule reads why, not "Failed to update record"."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError

from recovery.models import Shop
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import build_world, login, post, settings_form
from tests.processes import wait_until
from tests.test_faults_crashes import plain_dsn

DEPLOYMENT_NUMBER = "+447700800099"
WANTED = "+447700800077"  # the number two owners both want


def text(response) -> str:
    return response.get_data(as_text=True)


def test_an_own_sender_number_belongs_to_one_shop(session):
    f.shop(session, sms_from_number=WANTED)
    with pytest.raises(IntegrityError) as refused, session.begin_nested():
        f.shop(session, sms_from_number=WANTED)
    assert "uq_shops_sms_from_number" in str(refused.value)
    # Shops without a number of their own all share the deployment's.
    f.shop(session, sms_from_number=None)
    f.shop(session, sms_from_number=None)


def test_a_shop_cannot_claim_the_deployment_number(make_app, session, shop_a):
    app = make_app(TWILIO_FROM_NUMBER=DEPLOYMENT_NUMBER)
    client = app.test_client()
    assert login(client, shop_a.owner.email).status_code == 302
    url = f"/admin/shop_settings/edit/?id={shop_a.shop.id}"
    own = shop_a.shop.sms_from_number
    for typed in (DEPLOYMENT_NUMBER, "07700 800099"):
        response = post(client, url, settings_form(shop_a.shop, sms_from_number=typed))
        assert response.status_code == 200
        assert "That is the deployment&#39;s shared number" in text(response)
        assert "Failed to update record" not in text(response)
    session.expire_all()
    assert session.get(Shop, shop_a.shop.id).sms_from_number == own
    # Empty: the shop sends from the deployment's number, shared with the others.
    response = post(client, url, settings_form(shop_a.shop, sms_from_number=""))
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Shop, shop_a.shop.id).sms_from_number is None


def blocked_on_a_lock(database_url: str) -> bool:
    with psycopg.connect(plain_dsn(database_url), autocommit=True) as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]
    return waiting > 0


def test_two_owners_saving_one_number_at_once_read_a_clear_error(
    app, database_url, committed, clock
):
    """Both pass the form's check (neither sees the other's number yet); the unique index
    refuses the second, and its owner is told why."""
    a = build_world(committed, clock.now, "Shop A", "+447700800001")
    b = build_world(committed, clock.now, "Shop B", "+447700800002")
    committed.commit()
    client = app.test_client()
    assert login(client, a.owner.email).status_code == 302
    url = f"/admin/shop_settings/edit/?id={a.shop.id}"
    form = settings_form(a.shop, sms_from_number=WANTED)
    responses = []

    with psycopg.connect(plain_dsn(database_url)) as other_owner:
        # Shop B's owner saves the number first; that save is not committed yet.
        other_owner.execute(
            "UPDATE shops SET sms_from_number = %s WHERE id = %s", (WANTED, b.shop.id)
        )
        saving = threading.Thread(target=lambda: responses.append(post(client, url, form)))
        saving.start()
        wait_until(lambda: blocked_on_a_lock(database_url), 30, "A's save to wait for B's")
        other_owner.commit()
        saving.join(30)

    [response] = responses
    assert response.status_code == 200
    assert "Another shop already sends from that number" in text(response)
    assert "Failed to" not in text(response)
    committed.expire_all()
    assert committed.get(Shop, a.shop.id).sms_from_number == "+447700800001"
    assert committed.get(Shop, b.shop.id).sms_from_number == WANTED
