"""The customer's whole path on real processes, in real time:

book -> pay -> confirmation -> reminder -> self-cancel from the manage link -> refund ->
slot opening -> offer to the next customer -> YES -> pay -> booked.

gunicorn serves the app, an RQ worker runs the jobs and rq-scheduler releases the ones
set for a time; PostgreSQL and Redis are real; Twilio is the fake REST API on loopback
and Stripe is localstripe, which signs and posts its own webhooks to the server. The
test plays the customers: it follows the links in their texts, pays with the Stripe SDK,
taps Cancel on the manage page and answers YES with a request signed as Twilio signs.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from recovery.booking.create import create_booking
from recovery.db import db, utcnow
from recovery.models import Appointment, OpeningStatus, Payment, Reminder, SlotOpening
from tests import factories as f
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.processes import BIN, free_port, running, wait_until
from tests.stripe_support import Customer
from tests.test_faults_crashes import SCHEDULER, WORKER, twilio_env
from tests.twilio_signing import SHOP_NUMBER, new_sid, reply_text

LINK = re.compile(r"https?://\S+")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
REFUND = re.compile(r'name="refund"[^>]*value="([^"]*)"')
# The reminder falls due this long after the booking is made: long enough for the
# customer to pay first, short enough to wait for in a test.
REMINDER_IN = timedelta(seconds=40)


def stripe_settings(localstripe: str) -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": "sk_test_local",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_local",
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE_URL": localstripe,
    }


@pytest.fixture
def shop_world(committed):
    """A shop that refunds half inside 24 hours and offers slots up to 15 minutes ahead;
    Ann books, Bea is next in line for a slot that opens."""
    now = utcnow()
    shop = f.shop(
        committed,
        name="Path Barbers",
        reminder_hours=1,
        full_refund_hours=24,
        late_refund_percent=50,
        min_lead_minutes=15,
    )
    chair = f.resource(committed, shop, name="Chair 1")
    fade = f.service(committed, shop, name="Skin fade", deposit_value=2000)
    ann = f.customer(committed, shop, name="Ann")
    bea = f.customer(committed, shop, name="Bea", last_settled_at=now - timedelta(days=3))
    committed.commit()
    return {"shop": shop, "chair": chair, "service": fade, "ann": ann, "bea": bea}


@pytest.fixture
def stack(make_app, database_url, redis_conn, fake_twilio, localstripe) -> Iterator[dict]:
    """gunicorn, an RQ worker and rq-scheduler, with Twilio and Stripe on loopback fakes;
    localstripe delivers its signed webhooks to the server."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = {**stripe_settings(localstripe), "PUBLIC_BASE_URL": base}
    env = twilio_env(database_url, fake_twilio, **settings)
    web = [
        str(BIN / "gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--threads",
        "4",
        "app:create_app()",
    ]
    register = urllib.request.Request(  # noqa: S310 (loopback)
        f"{localstripe}/_config/webhooks/customer-path-{port}",
        data=urllib.parse.urlencode(
            {
                "url": f"{base}/webhooks/stripe",
                "secret": STRIPE_WEBHOOK_SECRET,
                "events[]": "payment_intent.succeeded",
            }
        ).encode(),
        method="POST",
    )
    urllib.request.urlopen(register, timeout=5)  # noqa: S310 (loopback)
    # Staff's side, in this process: the same settings, its jobs queued on the same Redis.
    desk = make_app(
        **settings,
        TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
        TWILIO_AUTH_TOKEN=fake_twilio.auth_token,
        TWILIO_FROM_NUMBER=SHOP_NUMBER,
        TWILIO_API_BASE_URL=fake_twilio.base_url,
    )
    with (
        running(web, env) as gunicorn,
        running(WORKER, env) as worker,
        running(SCHEDULER, env) as scheduler,
    ):
        wait_until(lambda: _healthy(base), 30, "gunicorn /healthz", gunicorn)
        yield {"base": base, "desk": desk, "procs": (gunicorn, worker, scheduler)}
        for proc in (gunicorn, worker, scheduler):
            assert "Traceback" not in proc.output(), proc.output()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class Phone:
    """One customer's phone: the texts the fake Twilio API delivered to it."""

    def __init__(self, fake, number: str, worker) -> None:
        self.fake, self.number, self.worker = fake, number, worker

    def texts(self) -> list[str]:
        return [m["body"] for m in self.fake.messages if m["to"] == self.number]

    def wait_for(self, words: str, timeout: float = 30) -> str:
        def arrived():
            return next((t for t in self.texts() if words in t), None)

        return wait_until(arrived, timeout, f"a text with {words!r} to {self.number}", self.worker)


def link_in(text: str, path: str) -> str:
    [link] = [u for u in LINK.findall(text) if f"/{path}/" in u]
    return link.rstrip(".")


def pay(link: str, stripe_customer: Customer, desk) -> None:
    """Open the pay page (which creates the intent at Stripe), then pay with a card."""
    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and "£20" in page.text
    with desk.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.token == link.rsplit("/", 1)[1]))
        intent_id = payment.provider_ref
        db.session.remove()
    assert stripe_customer.pay(intent_id).status == "succeeded"


def status_of(desk, appointment_id: int) -> str:
    with desk.app_context():
        try:
            return db.session.get(Appointment, appointment_id).status
        finally:
            db.session.remove()


def test_book_pay_remind_self_cancel_and_the_slot_is_rebooked(
    stack, shop_world, fake_twilio, localstripe
):
    desk, base = stack["desk"], stack["base"]
    worker = stack["procs"][1]
    w = shop_world
    ann = Phone(fake_twilio, w["ann"].phone, worker)
    bea = Phone(fake_twilio, w["bea"].phone, worker)
    card = Customer(localstripe)

    # Staff book Ann; the service takes a £20 deposit, so the booking waits for it.
    starts_at = (utcnow() + timedelta(hours=1) + REMINDER_IN).replace(microsecond=0)
    with desk.app_context():
        appt = create_booking(
            db.session, w["shop"].id, w["ann"].id, w["service"].id, w["chair"].id, starts_at
        )
        db.session.commit()
        appt_id = appt.id
        db.session.remove()
    assert status_of(desk, appt_id) == "pending_payment"

    # Ann pays from the link in her text; Stripe's webhook confirms it.
    asked = ann.wait_for("/pay/")
    pay(link_in(asked, "pay"), card, desk)
    confirmed = ann.wait_for("/b/")
    assert status_of(desk, appt_id) == "booked"
    manage = link_in(confirmed, "b")
    assert manage.startswith(f"{base}/b/")

    # The reminder comes at its time (one hour before), with the same manage link.
    reminded = ann.wait_for("Reminder", timeout=REMINDER_IN.total_seconds() + 30)
    assert link_in(reminded, "b") == manage

    # Ann cancels from the link: the page names the refund, asks again, then cancels.
    browser = requests.Session()
    page = browser.get(manage, timeout=10)
    assert page.status_code == 200
    assert "Skin fade" in page.text and "Path Barbers" in page.text
    assert "£10" in page.text  # half of £20: inside the shop's 24-hour full-refund time
    csrf = CSRF.search(page.text).group(1)
    ask = browser.post(f"{manage}/cancel", data={"csrf_token": csrf}, timeout=10)
    assert ask.status_code == 200 and "£10" in ask.text
    done = browser.post(
        f"{manage}/cancel",
        data={
            "csrf_token": CSRF.search(ask.text).group(1),
            "confirm": "1",
            "refund": REFUND.search(ask.text).group(1),
        },
        timeout=10,
    )
    assert done.status_code == 200 and "cancelled" in done.text.lower()
    assert status_of(desk, appt_id) == "cancelled"
    ann.wait_for("refunding £10")

    # The slot goes to Bea, who answers YES as Twilio would post it.
    offer = bea.wait_for("Reply YES")
    assert "A slot opened" in offer
    url = f"{base}/webhooks/twilio/sms"
    params = {
        "MessageSid": new_sid(),
        "AccountSid": fake_twilio.account_sid,
        "From": w["bea"].phone,
        "To": SHOP_NUMBER,
        "Body": "YES",
    }
    signature = RequestValidator(fake_twilio.auth_token).compute_signature(url, params)
    answer = requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert answer.status_code == 200
    pay_text = reply_text(answer)
    assert "Pay the £20" in pay_text

    # Bea pays; her booking is confirmed with its own manage link; the opening is filled.
    pay(link_in(pay_text, "pay"), card, desk)
    bea_confirmed = bea.wait_for("/b/")
    assert link_in(bea_confirmed, "b") != manage
    with desk.app_context():
        opening = db.session.scalar(select(SlotOpening))
        rebooked = db.session.scalar(
            select(Appointment).where(Appointment.source_slot_opening_id == opening.id)
        )
        assert opening.status == OpeningStatus.FILLED
        assert rebooked.customer_id == w["bea"].id and rebooked.status == "booked"
        assert rebooked.starts_at == starts_at
        # Ann's refund really went back through Stripe, and she was reminded exactly once.
        [ann_payment] = db.session.get(Appointment, appt_id).payments
        assert card.refunds(ann_payment.provider_ref) == [1000]
        reminders = db.session.scalars(select(Reminder)).all()
        assert [r.appointment_id for r in reminders] == [appt_id]
        db.session.remove()
    assert sum("Reminder" in t for t in ann.texts()) == 1
    # No text ever asks a customer to reply CANCEL (a carrier opt-out word).
    assert not any("CANCEL" in t for t in ann.texts() + bea.texts())
