"""A few weeks of recovery history for the demo shop, made by running the real loop.

The dashboard's first view should show what the product does, so the demo shop gets a
past: paid bookings made and then cancelled, their slots offered one customer at a time,
won and paid, won and lost to a declined card or an unpaid hold, turned down, ignored,
and run out of time. Nothing here writes an outcome. A seeded ``random.Random`` scripts
what the customers do; the domain functions do everything else, each at its simulated
time, and the side effects they request (texts, offer expiries, payment deadlines,
refunds, reminders) are taken out of the session and run from a heap at the times they
asked for, as the job runner would. Meanwhile the app's clock reads the simulated time,
so every row gets the dates it would have had.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.booking.cancellation import cancel_appointment
from recovery.booking.create import create_booking
from recovery.booking.holds import confirm_payment, fail_payment, release_hold
from recovery.db import CLOCK_EXTENSION
from recovery.effects import Effect, EffectKind
from recovery.messaging.gateway import SandboxSender
from recovery.messaging.outbox import Purpose, deliver, sender_number
from recovery.messaging.reminders import send_reminder
from recovery.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Message,
    Payment,
    PaymentStatus,
    Resource,
    Service,
    Shop,
    SlotOffer,
)
from recovery.offers.inbound import InboundSms, handle_inbound
from recovery.offers.offering import expire_offer, offer_next
from recovery.offers.openings import held_booking
from recovery.payments.gateway import SANDBOX, gateway_for
from recovery.payments.money import deposit_minor
from recovery.payments.refunds import carry_out

log = logging.getLogger(__name__)

HISTORY_DAYS = 21
SEED = 21  # the same history every time

SLOT_TIMES = [time(h, m) for h in range(9, 17) for m in (0, 30)]
DAYTIME = (8 * 60, 19 * 60 + 30)  # when customers book and cancel, minutes after midnight


class Reply(enum.Enum):
    """What one customer does with one offer."""

    PAYS = "says yes and pays"
    CARD_DECLINED = "says yes, then the payment fails"
    NEVER_PAYS = "says yes and never pays"
    NO = "says no"
    SILENT = "does not answer"


# How each cancelled booking's slot is meant to end, before the rng shuffles them: most
# are won and paid, some only after a failed or abandoned payment, and a few cancellations
# come too close to the start for anyone to take them.
SCENARIOS = {
    "filled": 16,
    "failed, then filled": 3,
    "abandoned, then filled": 2,
    "too late": 3,
    "failed, then too late": 1,
}
NEEDS_DEPOSIT = {"failed, then filled", "abandoned, then filled", "failed, then too late"}
REASONS = (
    "customer cancelled by phone",
    "customer cancelled online",
    "customer unwell",
    "clash with work",
)
YES_WORDS = ("YES", "Yes", "yes please", "Y", "ok")
NO_WORDS = ("NO", "No thanks", "no")


@dataclass
class _Plan:
    """One past booking that is made, paid and then cancelled."""

    kind: str
    customer_id: int
    service_id: int
    resource_id: int
    starts_at: datetime
    booked_at: datetime
    cancel_at: datetime
    reason: str
    script: list[Reply]  # what the customers offered its slot do, in turn
    appointment_id: int | None = None


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def _clock_installed(clock: _Clock) -> Iterator[None]:
    """Column defaults and ``utcnow()`` read the simulated time while the history runs."""
    extensions = current_app.extensions
    missing = object()
    saved = extensions.get(CLOCK_EXTENSION, missing)
    extensions[CLOCK_EXTENSION] = clock
    try:
        yield
    finally:
        if saved is missing:
            extensions.pop(CLOCK_EXTENSION, None)
        else:
            extensions[CLOCK_EXTENSION] = saved


def make_history(session: Session, shop: Shop, now: datetime, days: int = HISTORY_DAYS) -> int:
    """Run the last ``days`` of the shop's recovery loop; returns how many bookings were
    cancelled. Everything happens before ``now``; the caller commits."""
    rng = random.Random(SEED)
    plans = _plan(session, shop, now, days, rng)
    if not plans:
        return 0
    history = _History(session, shop, rng, _Clock(now))
    for plan in plans:
        history.at(plan.booked_at, history.book, plan)
        history.at(plan.cancel_at, history.cancel, plan)
    history.clock.now = min(plan.booked_at for plan in plans)
    with _clock_installed(history.clock):
        dropped = history.run(until=now)
    if dropped:
        # Only work due after ``now`` could be left, and every slot here starts before it.
        log.warning("demo history: %d step(s) due after now were not run", dropped)
    return len(plans)


# ---------------------------------------------------------------- the plan


def _plan(session: Session, shop: Shop, now: datetime, days: int, rng: random.Random):
    zone = ZoneInfo(shop.timezone)
    today = now.astimezone(zone).date()
    customers = session.scalars(
        select(Customer).where(Customer.shop_id == shop.id).order_by(Customer.id)
    ).all()
    services = session.scalars(
        select(Service).where(Service.shop_id == shop.id).order_by(Service.id)
    ).all()
    resources = session.scalars(
        select(Resource).where(Resource.shop_id == shop.id).order_by(Resource.id)
    ).all()
    # Who is busy when: the shop's own bookings, then each planned one as it is placed.
    busy = [
        (a.resource_id, a.customer_id, a.starts_at, a.ends_at)
        for a in session.scalars(
            select(Appointment).where(
                Appointment.shop_id == shop.id,
                Appointment.status != AppointmentStatus.CANCELLED,
            )
        )
    ]
    with_deposit = [s for s in services if deposit_minor(s) > 0]
    kinds = [kind for kind, count in SCENARIOS.items() for _ in range(count)]
    rng.shuffle(kinds)
    plans = []
    last = len(kinds) - 1
    for i, kind in enumerate(kinds):
        # Spread over the period, the last one yesterday, so the default 7-day dashboard
        # has its share and every slot has started before now.
        day = today - timedelta(days=days - 1) + timedelta(days=round(i * (days - 2) / last))
        choices = with_deposit if kind in NEEDS_DEPOSIT else services
        for _ in range(200):
            service = rng.choice(choices)
            resource = rng.choice(resources)
            starts = datetime.combine(day, rng.choice(SLOT_TIMES), zone).astimezone(UTC)
            ends = starts + timedelta(minutes=service.duration_minutes)
            overlapping = [b for b in busy if b[2] < ends and b[3] > starts]
            if any(b[0] == resource.id for b in overlapping):
                continue
            taken = {b[1] for b in overlapping}
            free = [c for c in customers if c.id not in taken]
            if free:
                break
        else:
            continue  # the day is full; fewer openings is fine
        customer = rng.choice(free)
        busy.append((resource.id, customer.id, starts, ends))
        cancel_at = _cancel_time(kind, starts, zone, rng)
        booked_day = cancel_at.astimezone(zone).date() - timedelta(days=rng.randint(2, 12))
        plans.append(
            _Plan(
                kind=kind,
                customer_id=customer.id,
                service_id=service.id,
                resource_id=resource.id,
                starts_at=starts,
                booked_at=_daytime(booked_day, zone, rng),
                cancel_at=cancel_at,
                reason=rng.choice(REASONS),
                script=_script(kind, rng),
            )
        )
    return plans


def _daytime(day: date, zone: ZoneInfo, rng: random.Random) -> datetime:
    minute = rng.randint(*DAYTIME)
    local = datetime.combine(day, time(minute // 60, minute % 60), zone)
    return local.astimezone(UTC)


def _cancel_time(kind: str, starts: datetime, zone: ZoneInfo, rng: random.Random) -> datetime:
    if kind.endswith("too late"):
        # Just outside the lead time: one or two customers can be asked before it closes.
        low, high = (85, 110) if kind.startswith("failed") else (62, 100)
        return starts - timedelta(minutes=rng.randint(low, high))
    start_day = starts.astimezone(zone).date()
    while True:
        cancel_at = _daytime(start_day - timedelta(days=rng.choice((0, 1, 1, 2, 3))), zone, rng)
        # Hours ahead, so the loop has time to fill it even past a NO or two.
        if starts - cancel_at >= timedelta(hours=4):
            return cancel_at


def _script(kind: str, rng: random.Random) -> list[Reply]:
    def passes(most: int) -> list[Reply]:
        return [rng.choice((Reply.NO, Reply.SILENT)) for _ in range(rng.randint(0, most))]

    if kind == "filled":
        return [*passes(2), Reply.PAYS]
    if kind == "failed, then filled":
        return [*passes(1), Reply.CARD_DECLINED, *passes(1), Reply.PAYS]
    if kind == "abandoned, then filled":
        return [Reply.NEVER_PAYS, *passes(1), Reply.PAYS]
    if kind == "failed, then too late":
        return [Reply.CARD_DECLINED]
    return []  # too late: whoever is asked passes or does not answer in time


# ---------------------------------------------------------------- running it


class _History:
    def __init__(self, session: Session, shop: Shop, rng: random.Random, clock: _Clock):
        self.session = session
        self.shop_id = shop.id
        self.rng = rng
        self.clock = clock
        self.sms = SandboxSender()
        self.gateway = gateway_for(current_app, SANDBOX)
        self.heap: list[tuple[datetime, int, Callable, tuple]] = []
        self.order = itertools.count()  # ties run in the order they were asked for
        self.sids = itertools.count(1)
        self.scripts: dict[int, list[Reply]] = {}  # opening id -> replies still to come
        self.handlers: dict[EffectKind, Callable[[int], object]] = {
            EffectKind.SEND_MESSAGE: self.send,
            EffectKind.OFFER_NEXT: lambda ident: offer_next(session, ident, now=self.clock.now),
            EffectKind.EXPIRE_OFFER: lambda ident: expire_offer(session, ident, now=self.clock.now),
            EffectKind.RELEASE_HOLD: lambda ident: release_hold(session, ident, now=self.clock.now),
            EffectKind.SEND_REMINDER: lambda ident: send_reminder(session, ident, self.clock.now),
            EffectKind.REFUND: lambda ident: carry_out(
                session, ident, self.gateway, self.clock.now
            ),
        }

    def at(self, when: datetime, action: Callable, *args) -> None:
        heapq.heappush(self.heap, (when, next(self.order), action, args))

    def after(self, low_minutes: int, high_minutes: int, action: Callable, *args) -> None:
        seconds = self.rng.randint(low_minutes * 60, high_minutes * 60)
        self.at(self.clock.now + timedelta(seconds=seconds), action, *args)

    def run(self, until: datetime) -> int:
        """Run every step due by ``until`` in time order; returns how many were left."""
        while self.heap and self.heap[0][0] <= until:
            when, _, action, args = heapq.heappop(self.heap)
            self.clock.now = max(self.clock.now, when)
            action(*args)
            self.session.flush()
            for effect in effects.take_pending(self.session):
                self.at(effect.at or self.clock.now, self.carry_out, effect)
            # Each step is a unit of work of its own, as a job is: the next one reads the
            # rows afresh instead of trusting what this one loaded.
            self.session.expire_all()
        return len(self.heap)

    def carry_out(self, effect: Effect) -> None:
        handler = self.handlers.get(effect.kind)
        if handler is None:
            raise ValueError(f"the demo history cannot carry out {effect.kind}")
        handler(*effect.args)

    # A customer's booking, made and paid ahead, then cancelled.

    def book(self, plan: _Plan) -> None:
        appointment = create_booking(
            self.session,
            self.shop_id,
            plan.customer_id,
            plan.service_id,
            plan.resource_id,
            plan.starts_at,
            now=self.clock.now,
        )
        plan.appointment_id = appointment.id
        payment = self._pending_payment(appointment.id)
        if payment is not None:
            self.after(3, 45, self.pay, payment.id)

    def cancel(self, plan: _Plan) -> None:
        result = cancel_appointment(
            self.session, plan.appointment_id, reason=plan.reason, now=self.clock.now
        )
        if result.opening is not None:
            self.scripts[result.opening.id] = list(plan.script)

    def pay(self, payment_id: int) -> None:
        confirm_payment(self.session, payment_id, now=self.clock.now)

    def decline_card(self, payment_id: int) -> None:
        fail_payment(self.session, payment_id, now=self.clock.now)

    # Texts out, and what the customers who get offers do about them.

    def send(self, message_id: int) -> None:
        if deliver(self.session, message_id, self.sms, self.clock.now) != "sent":
            return
        message = self.session.get(Message, message_id)
        if message.purpose == Purpose.OFFER and message.slot_offer_id is not None:
            self.offer_received(message.slot_offer_id)

    def offer_received(self, offer_id: int) -> None:
        offer = self.session.get(SlotOffer, offer_id)
        script = self.scripts.setdefault(offer.slot_opening_id, [])
        reply = script.pop(0) if script else self.rng.choice((Reply.NO, Reply.SILENT))
        if reply is Reply.SILENT:
            return  # the offer's expiry moves the slot on
        if reply is Reply.NO:
            self.after(1, 10, self.text, offer.customer_id, self.rng.choice(NO_WORDS))
            return
        self.after(1, 8, self.say_yes, offer_id, reply)

    def say_yes(self, offer_id: int, reply: Reply) -> None:
        offer = self.session.get(SlotOffer, offer_id)
        self.text(offer.customer_id, self.rng.choice(YES_WORDS))
        won = held_booking(self.session, offer.slot_opening_id)
        if won is None or won.customer_id != offer.customer_id:
            return
        payment = self._pending_payment(won.id)
        if payment is None:
            return  # nothing to pay: booked at once
        if reply is Reply.PAYS:
            self.after(1, 6, self.pay, payment.id)
        elif reply is Reply.CARD_DECLINED:
            self.after(1, 5, self.decline_card, payment.id)
        # NEVER_PAYS: the hold's deadline releases the slot to the next customer.

    def text(self, customer_id: int, body: str) -> None:
        customer = self.session.get(Customer, customer_id)
        shop = self.session.get(Shop, self.shop_id)
        sms = InboundSms(
            sid=f"SM{self.shop_id:08x}{next(self.sids):024x}",
            from_number=customer.phone,
            to_number=sender_number(shop),
            body=body,
        )
        handle_inbound(self.session, sms, self.clock.now, shop_id=self.shop_id)

    def _pending_payment(self, appointment_id: int) -> Payment | None:
        return self.session.scalar(
            select(Payment).where(
                Payment.appointment_id == appointment_id,
                Payment.status == PaymentStatus.PENDING,
            )
        )
