"""Staff accounts in the panel: the password rule, adding, resetting, disabling and
enabling (each ends the right sessions), the shop always keeping an active owner, scoping
to the owner's shop, and an audit row for every change."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from wtforms.validators import ValidationError

from admin.passwords import IS_EMAIL, TOO_COMMON, TOO_LONG, TOO_SHORT, check_password_policy
from admin.staff import EMAIL_TAKEN, NO_LONGER_OWNER, ensure_owner_stays
from recovery.audit import AuditAction
from recovery.demo.seed import DEMO_EMAIL, DEMO_PASSWORD
from recovery.models import AuditEvent, StaffUser
from tests import factories as f
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.admin_support import PASSWORD, act, forget_cached_request_state, login, post

NEW_PASSWORD = "violet kettle harbour"


def text(response) -> str:
    return response.get_data(as_text=True)


def get(client, url: str = "/admin/"):
    """A request as this client alone (the test's app context outlives requests)."""
    forget_cached_request_state()
    return client.get(url)


def signed_in(client) -> bool:
    return get(client).status_code == 200


def audit_rows(session, action: AuditAction) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == action.value).order_by(AuditEvent.id)
    return list(session.scalars(query))


def reload(session, user: StaffUser) -> StaffUser:
    session.expire_all()
    return session.get(StaffUser, user.id)


# ---------------------------------------------------------------- the password rule


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-one", TOO_SHORT),
        ("x" * 129, TOO_LONG),
        ("new@shop.example", IS_EMAIL),
        ("NEW@Shop.Example", IS_EMAIL),
        ("password1234", TOO_COMMON),  # on the shipped list
        ("Qwertyuiop123", TOO_COMMON),  # on the list, whatever the case
        ("Sunshine2024!!", TOO_COMMON),  # a listed word with digits and symbols stuck on
        ("aaaaaaaaaaaaaa", TOO_COMMON),
        ("abcabcabcabc", TOO_COMMON),
        ("123456789012", TOO_COMMON),
        ("asdfghjklzxcv", TOO_COMMON),  # a keyboard walk
    ],
)
def test_weak_passwords_are_refused(password, message):
    assert check_password_policy(password, "new@shop.example") == message


@pytest.mark.parametrize(
    "password", [NEW_PASSWORD, "a-long-password", "Tr0ub4dor&3-horse", "x" * 11 + "y"]
)
def test_long_uncommon_passwords_pass(password):
    assert check_password_policy(password, "new@shop.example") is None


def test_the_demo_password_meets_the_rule():
    assert check_password_policy(DEMO_PASSWORD, DEMO_EMAIL) is None


# ---------------------------------------------------------------- adding staff


def new_staff(**changes) -> dict:
    return {"email": "New@Shop.example", "name": "New", "role": "staff", **changes}


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "A new account needs a password."),
        ("pw-123456", TOO_SHORT),
        ("password1234", TOO_COMMON),
        ("new@shop.example", IS_EMAIL),
    ],
)
def test_adding_staff_refuses_a_weak_password(owner_client, session, password, message):
    response = post(owner_client, "/admin/staff/new/", new_staff(password=password))
    assert response.status_code == 200
    assert message in text(response)
    assert session.query(StaffUser).filter_by(email="new@shop.example").one_or_none() is None
    assert audit_rows(session, AuditAction.STAFF_ADDED) == []


def test_owner_adds_staff_and_it_is_audited(app, owner_client, session, shop_a):
    response = post(owner_client, "/admin/staff/new/", new_staff(password=NEW_PASSWORD))
    assert response.status_code == 302
    user = session.query(StaffUser).filter_by(email="new@shop.example").one()
    assert user.shop_id == shop_a.shop.id and user.active and not user.is_owner

    [row] = audit_rows(session, AuditAction.STAFF_ADDED)
    assert (row.shop_id, row.staff_id, row.target_id) == (shop_a.shop.id, shop_a.owner.id, user.id)
    expected = {"email": "new@shop.example", "name": "New", "role": "staff", "active": True}
    assert row.after == expected
    assert "password" not in str(row.after) and row.before is None

    fresh = app.test_client()
    assert login(fresh, "new@shop.example", NEW_PASSWORD).status_code == 302


def error_page(response, typed: str) -> str:
    """What the owner reads after a refused form, without the address they typed and the
    tokens that differ on every page (CSRF, script nonces)."""
    assert response.status_code == 200
    page = re.sub(r'nonce="[^"]*"', "", text(response).replace(typed, "TYPED"))
    return "\n".join(line for line in page.splitlines() if "csrf" not in line)


def test_an_email_in_use_reads_the_same_here_and_at_another_shop(
    owner_client, session, shop_a, shop_b
):
    """Email is the sign-in name of every shop, so it is unique everywhere; an owner
    trying one that is taken learns only that, never whether the account is in their shop
    or someone else's (no "Already exists.", no database error)."""
    pages = {}
    for where, typed in [
        ("here", shop_a.clerk.email),
        ("another shop", shop_b.clerk.email),
        ("another shop, other case", shop_b.clerk.email.upper()),
    ]:
        response = post(
            owner_client, "/admin/staff/new/", new_staff(email=typed, password=NEW_PASSWORD)
        )
        pages[where] = error_page(response, typed)
        assert EMAIL_TAKEN in pages[where]
        for leak in ("Already exists", "UniqueViolation", "duplicate key", shop_b.shop.name):
            assert leak not in pages[where]
    assert pages["here"] == pages["another shop"] == pages["another shop, other case"]
    assert session.query(StaffUser).filter_by(shop_id=shop_a.shop.id).count() == 2
    assert audit_rows(session, AuditAction.STAFF_ADDED) == []


def test_editing_an_email_to_one_in_use_is_refused_the_same_way(
    owner_client, session, shop_a, shop_b
):
    url = f"/admin/staff/edit/?id={shop_a.clerk.id}"
    data = {"email": shop_b.clerk.email, "name": "Robin", "role": "staff"}
    assert EMAIL_TAKEN in text(post(owner_client, url, data))
    session.expire_all()
    assert session.get(StaffUser, shop_a.clerk.id).email != shop_b.clerk.email
    # Keeping one's own address is not a clash.
    data["email"] = shop_a.clerk.email
    assert post(owner_client, url, data).status_code == 302


def test_editing_staff_is_audited_with_what_changed(owner_client, session, shop_a):
    clerk, old_name = shop_a.clerk, shop_a.clerk.name
    url = f"/admin/staff/edit/?id={clerk.id}"
    data = {"email": clerk.email, "name": "Robin", "role": "owner"}
    assert post(owner_client, url, data).status_code == 302
    assert reload(session, clerk).is_owner

    [row] = audit_rows(session, AuditAction.STAFF_CHANGED)
    assert row.target_id == clerk.id
    assert row.before == {"name": old_name, "role": "staff"}
    assert row.after == {"name": "Robin", "role": "owner"}
    # Saving without a change leaves no row.
    assert post(owner_client, url, data).status_code == 302
    assert len(audit_rows(session, AuditAction.STAFF_CHANGED)) == 1


def test_deleting_staff_is_audited(owner_client, session, shop_a):
    spare = f.staff(session, shop_a.shop, role="staff", email="spare@shop.example")
    session.commit()
    response = post(owner_client, "/admin/staff/delete/", {"id": spare.id})
    assert response.status_code == 302
    session.expire_all()
    assert session.get(StaffUser, spare.id) is None
    [row] = audit_rows(session, AuditAction.STAFF_DELETED)
    assert row.target_id == spare.id and row.before["email"] == "spare@shop.example"


# ---------------------------------------------------------------- password reset


def test_reset_password_ends_the_staff_members_sessions(app, owner_client, session, shop_a):
    clerk_client = app.test_client()
    assert login(clerk_client, shop_a.clerk.email).status_code == 302
    assert signed_in(clerk_client)

    url = f"/admin/staff/password/?id={shop_a.clerk.id}"
    assert NEW_PASSWORD not in text(get(owner_client, url))
    response = post(owner_client, url, {"password": NEW_PASSWORD}, follow_redirects=True)
    assert "their sessions have ended" in text(response)

    response = get(clerk_client)
    assert response.status_code == 302 and "/login" in response.location
    assert login(app.test_client(), shop_a.clerk.email, PASSWORD).status_code == 401
    assert login(app.test_client(), shop_a.clerk.email, NEW_PASSWORD).status_code == 302
    assert signed_in(owner_client)  # the owner's own session goes on

    [row] = audit_rows(session, AuditAction.STAFF_PASSWORD_RESET)
    assert (row.staff_id, row.target_id) == (shop_a.owner.id, shop_a.clerk.id)
    assert row.before is None and row.after is None


@pytest.mark.parametrize(
    ("password", "message"), [("short-one", TOO_SHORT), ("iloveyou12345", TOO_COMMON)]
)
def test_reset_refuses_a_weak_password(app, owner_client, session, shop_a, password, message):
    clerk_client = app.test_client()
    assert login(clerk_client, shop_a.clerk.email).status_code == 302
    url = f"/admin/staff/password/?id={shop_a.clerk.id}"
    response = post(owner_client, url, {"password": password})
    assert response.status_code == 400 and message in text(response)
    assert signed_in(clerk_client)
    assert login(app.test_client(), shop_a.clerk.email, PASSWORD).status_code == 302
    assert audit_rows(session, AuditAction.STAFF_PASSWORD_RESET) == []


def test_owner_resetting_their_own_password_stays_signed_in_here_only(
    app, owner_client, session, shop_a
):
    other_device = app.test_client()
    assert login(other_device, shop_a.owner.email).status_code == 302
    url = f"/admin/staff/password/?id={shop_a.owner.id}"
    assert post(owner_client, url, {"password": NEW_PASSWORD}).status_code == 302
    assert signed_in(owner_client)
    assert not signed_in(other_device)


def test_reset_action_opens_the_password_page(owner_client, shop_a):
    response = act(owner_client, "staff", "reset_password", shop_a.clerk.id)
    assert response.status_code == 302
    assert response.location.endswith(f"/admin/staff/password/?id={shop_a.clerk.id}")


# ---------------------------------------------------------------- disable and enable


def test_disabling_signs_out_everywhere_at_once_and_blocks_sign_in(
    app, owner_client, session, shop_a
):
    desk, tablet = app.test_client(), app.test_client()
    for client in (desk, tablet):
        assert login(client, shop_a.clerk.email).status_code == 302
        assert signed_in(client)

    response = act(owner_client, "staff", "disable", shop_a.clerk.id, follow_redirects=True)
    assert "1 account disabled and signed out everywhere." in text(response)

    for client in (desk, tablet):
        response = get(client)
        assert response.status_code == 302 and "/login" in response.location
    assert login(app.test_client(), shop_a.clerk.email).status_code == 401

    [row] = audit_rows(session, AuditAction.STAFF_DISABLED)
    assert row.target_id == shop_a.clerk.id
    assert (row.before, row.after) == ({"active": True}, {"active": False})


def test_enabling_lets_them_sign_in_but_does_not_revive_old_sessions(
    app, owner_client, session, shop_a
):
    old = app.test_client()
    assert login(old, shop_a.clerk.email).status_code == 302
    act(owner_client, "staff", "disable", shop_a.clerk.id)
    act(owner_client, "staff", "enable", shop_a.clerk.id)
    assert reload(session, shop_a.clerk).active

    assert not signed_in(old)
    assert login(app.test_client(), shop_a.clerk.email).status_code == 302
    [row] = audit_rows(session, AuditAction.STAFF_ENABLED)
    assert (row.before, row.after) == ({"active": False}, {"active": True})


def test_owner_cannot_disable_themselves(owner_client, session, shop_a):
    response = act(owner_client, "staff", "disable", shop_a.owner.id, follow_redirects=True)
    assert "You cannot disable your own account." in text(response)
    assert reload(session, shop_a.owner).active
    assert signed_in(owner_client)
    assert audit_rows(session, AuditAction.STAFF_DISABLED) == []


def test_an_owner_can_disable_another_owner(app, owner_client, session, shop_a):
    second = f.staff(session, shop_a.shop, role="owner", email="second@shop.example")
    session.commit()
    theirs = app.test_client()
    assert login(theirs, second.email).status_code == 302
    act(owner_client, "staff", "disable", second.id)
    assert not reload(session, second).active
    assert not signed_in(theirs)


def test_a_change_by_an_owner_no_longer_active_is_refused(session, shop_a):
    """What the row locks decide when two owners act on each other at once: the second
    change finds its maker no longer an active owner."""
    second = f.staff(session, shop_a.shop, role="owner", email="second@shop.example")
    second.active = False
    session.commit()
    with pytest.raises(ValidationError, match=NO_LONGER_OWNER):
        ensure_owner_stays(second, shop_a.owner, loses_owner=True)
    ensure_owner_stays(shop_a.owner, second, loses_owner=True)  # the active owner may


def test_plain_staff_cannot_manage_staff(clerk_client, shop_a):
    url = f"/admin/staff/password/?id={shop_a.owner.id}"
    assert get(clerk_client, url).status_code == 403
    assert act(clerk_client, "staff", "disable", shop_a.owner.id).status_code == 403


# ---------------------------------------------------------------- another shop


def test_another_shops_staff_are_invisible(owner_client, session, shop_a, shop_b):
    theirs = shop_b.clerk
    assert theirs.email not in text(get(owner_client, "/admin/staff/"))
    for url in (
        f"/admin/staff/password/?id={theirs.id}",
        f"/admin/staff/edit/?id={theirs.id}",
        f"/admin/staff/details/?id={theirs.id}",
    ):
        assert get(owner_client, url).status_code == 404
    url = f"/admin/staff/password/?id={theirs.id}"
    assert post(owner_client, url, {"password": NEW_PASSWORD}).status_code == 404
    for name in ("disable", "enable", "reset_password"):
        assert act(owner_client, "staff", name, theirs.id).status_code == 404

    after = reload(session, theirs)
    assert after.active and after.check_password(PASSWORD)
    assert session.scalar(select(AuditEvent.id).limit(1)) is None


# ---------------------------------------------------------------- the CLI


def test_cli_refuses_a_weak_password(app, session, shop_a):
    runner = app.test_cli_runner()
    args = ["staff", "create", "--email", "cli@shop.example", "--shop-id", str(shop_a.shop.id)]
    result = runner.invoke(args=[*args, "--password", "password1234"])
    assert result.exit_code != 0 and TOO_COMMON in result.output
    assert session.query(StaffUser).filter_by(email="cli@shop.example").one_or_none() is None

    result = runner.invoke(args=[*args, "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    user = session.query(StaffUser).filter_by(email="cli@shop.example").one()
    assert user.check_password(NEW_PASSWORD)
