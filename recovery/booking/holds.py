"""A booking held for its deposit, and what the payment gateway says about it.

Gateway events are *triggers*, not truth: ``sync_payment`` reads the intent's current
state and applies it here, so events that repeat, arrive late or arrive in reverse order
all end in the state the gateway really holds. Succeeded: the booking is ``booked``.
Failed, or not paid by ``payment_due_at``: the hold is released (booking cancelled, offer
declined, opening open again) and the next customer is offered. Money that arrives for a
released hold is refunded in full. No gateway call is made while a row is locked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from recovery import effects
from recovery.db import lock_row, utcnow
from recovery.effects import EffectKind
from recovery.errors import InvalidTransition, NotFound
from recovery.links import manage_url
from recovery.messaging import texts
from recovery.messaging.outbox import Purpose, queue_sms
from recovery.messaging.reminders import schedule_reminder
from recovery.models import (
    Appointment,
    AppointmentStatus,
    OfferStatus,
    OpeningStatus,
    Payment,
    PaymentStatus,
    SlotOffer,
    SlotOpening,
)
from recovery.offers.locks import lock_booking
from recovery.offers.offering import offer_next
from recovery.offers.openings import reopen
from recovery.payments.gateway import DESK, SANDBOX, GatewayError, IntentState, PaymentGateway
from recovery.payments.money import deposit_minor
from recovery.payments.refunds import request_refund
from recovery.payments.requests import (
    close_payment,
    is_settled,
    mark_settled,
    pending_payment_for,
)

log = logging.getLogger(__name__)

Gateways = Callable[[str], PaymentGateway]  # provider name -> its gateway

HOLD_EXPIRED = "payment not received in time"
PAYMENT_FAILED = "payment failed"
LATE_PAYMENT = "paid after the hold was released"


def _release_kind(reason: str) -> str:
    """Which text the customer gets: their payment timed out, failed, or staff cancelled."""
    return {HOLD_EXPIRED: "expired", PAYMENT_FAILED: "failed"}.get(reason, "cancelled")


def release_hold(
    session: Session,
    appointment_id: int,
    reason: str = HOLD_EXPIRED,
    now: datetime | None = None,
    force: bool = False,
) -> bool:
    """Give the time back: the booking is cancelled and its payment request closed. A
    won slot (a booking made from an opening) also declines the offer, opens the opening
    again and offers the next customer. Used for a failed or abandoned payment (``force``
    skips the deadline check, for failures and staff cancellations)."""
    now = now or utcnow()
    appt = lock_booking(session, appointment_id)
    if appt is None or appt.status != AppointmentStatus.PENDING_PAYMENT:
        return False
    if not force and appt.payment_due_at and appt.payment_due_at > now:
        effects.request(session, EffectKind.RELEASE_HOLD, appt.id, at=appt.payment_due_at)
        return False

    appt.status = AppointmentStatus.CANCELLED
    appt.cancelled_at = now
    appt.cancellation_reason = reason[:200]
    payment = pending_payment_for(session, appt.id)
    if payment is not None:
        payment.status = PaymentStatus.CANCELED
        close_payment(session, payment, now)
    if appt.source_slot_opening_id is None:
        # An ordinary booking whose deposit never came: the time is free again, and a
        # booking that was never paid opens no slot for recovery.
        appt.recovery_note = "no slot opened: the booking was not paid"
        if reason == HOLD_EXPIRED:
            body = texts.booking_unpaid_released(appt.shop, appt.starts_at, now)
        else:
            body = texts.hold_released(appt.shop, appt.starts_at, now, why=_release_kind(reason))
        queue_sms(session, appt.shop, appt.customer, body, Purpose.RELEASED, appointment=appt)
        session.flush()
        return True

    opening = session.get(SlotOpening, appt.source_slot_opening_id)
    appt.recovery_note = f"hold released; slot opening #{opening.id} reopened"
    offer = session.scalar(
        select(SlotOffer).where(
            SlotOffer.slot_opening_id == opening.id,
            SlotOffer.customer_id == appt.customer_id,
            SlotOffer.status == OfferStatus.ACCEPTED,
        )
    )
    if offer is not None:
        offer.status = OfferStatus.DECLINED
    if opening.status == OpeningStatus.FILLED:
        reopen(opening, f"reopened: {reason}")
    body = texts.hold_released(appt.shop, appt.starts_at, now, why=_release_kind(reason))
    queue_sms(session, appt.shop, appt.customer, body, Purpose.RELEASED, appointment=appt)
    session.flush()
    offer_next(session, opening.id, now)
    return True


def mark_booked(session: Session, appt: Appointment, now: datetime, *, paid: bool) -> None:
    """The booking is confirmed: the customer gets the confirmation with their manage link
    (if the shop sends confirmations) and the reminder is scheduled."""
    appt.status = AppointmentStatus.BOOKED
    appt.payment_due_at = None
    if is_settled(appt):
        mark_settled(appt.customer, appt)
    shop = appt.shop
    if shop.send_confirmations:
        body = texts.confirmation(shop, appt.starts_at, now, manage_url(appt), paid=paid)
        queue_sms(session, shop, appt.customer, body, Purpose.BOOKED, appointment=appt)
    schedule_reminder(session, appt, now)
    session.flush()


def confirm_payment(session: Session, payment_id: int, now: datetime | None = None) -> str:
    """The deposit arrived: the booking is confirmed if its hold still stands.

    Money that arrives for a hold already released (abandoned, failed, cancelled) is
    refunded in full at once and the customer told: the slot may be someone else's now.
    """
    now = now or utcnow()
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    appt = lock_booking(session, payment.appointment_id)
    payment = lock_row(session, Payment, payment_id)
    if payment.status == PaymentStatus.SUCCEEDED:
        return "already succeeded"
    payment.status = PaymentStatus.SUCCEEDED
    payment.succeeded_at = now
    if appt.status != AppointmentStatus.PENDING_PAYMENT:
        log.warning(
            "payment %s arrived for appointment %s in state %s: refunding",
            payment.id,
            appt.id,
            appt.status,
        )
        session.flush()
        request_refund(
            session,
            payment.id,
            payment.amount_minor,
            LATE_PAYMENT,
            f"late-{payment.id}",
            now=now,
        )
        body = texts.late_payment_refunded(appt.shop, payment.amount_minor)
        queue_sms(session, appt.shop, appt.customer, body, Purpose.REFUNDED)
        session.flush()
        return "late: refunded"
    session.flush()
    mark_booked(session, appt, now, paid=True)
    return "booked"


def fail_payment(session: Session, payment_id: int, now: datetime | None = None) -> str:
    """The deposit failed: release the hold at once so the next customer is offered."""
    now = now or utcnow()
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"no payment {payment_id}")
    if payment.status != PaymentStatus.PENDING:
        return f"ignored: payment already {payment.status}"
    released = release_hold(
        session, payment.appointment_id, reason=PAYMENT_FAILED, now=now, force=True
    )
    payment = lock_row(session, Payment, payment_id)
    if payment.status not in (PaymentStatus.PENDING, PaymentStatus.CANCELED):
        return f"ignored: payment already {payment.status}"
    payment.status = PaymentStatus.FAILED
    close_payment(session, payment, now)
    session.flush()
    return "released" if released else "failed"


# ---------------------------------------------------------------- staff decide at the desk


def pay_at_desk(
    session: Session, appointment_id: int, staff_id: int, reason: str, now: datetime | None = None
) -> Payment:
    """Staff took the deposit in the shop: recorded as a succeeded ``desk`` payment (who,
    when, why), the online request closed. Counts as paid for recovery."""
    now = now or utcnow()
    appt = _awaiting_deposit(session, appointment_id, reason, now)
    amount = deposit_minor(appt.service)
    payment = Payment(
        appointment_id=appt.id,
        provider=DESK,
        provider_ref=f"desk-{appt.manage_token}",
        amount_minor=amount,
        currency=appt.shop.currency,
        status=PaymentStatus.SUCCEEDED,
        succeeded_at=now,
        provider_closed_at=now,
        recorded_by_id=staff_id,
        note=reason.strip()[:200],
    )
    session.add(payment)
    session.flush()
    session.refresh(appt, ["payments"])
    mark_booked(session, appt, now, paid=True)
    return payment


def waive_deposit(
    session: Session, appointment_id: int, staff_id: int, reason: str, now: datetime | None = None
) -> Appointment:
    """Staff let the booking go ahead without its deposit (who, when, why). Not paid, so
    cancelling it later opens no slot for recovery."""
    now = now or utcnow()
    appt = _awaiting_deposit(session, appointment_id, reason, now)
    appt.deposit_waived_at = now
    appt.deposit_waived_by_id = staff_id
    appt.deposit_waived_reason = reason.strip()[:200]
    mark_booked(session, appt, now, paid=False)
    return appt


def _awaiting_deposit(
    session: Session, appointment_id: int, reason: str, now: datetime
) -> Appointment:
    """Lock a booking that waits for its deposit and close its online request."""
    if not reason or not reason.strip():
        raise InvalidTransition("say why (a reason is required)")
    appt = lock_booking(session, appointment_id)
    if appt is None:
        raise NotFound(f"no appointment {appointment_id}")
    if appt.status != AppointmentStatus.PENDING_PAYMENT:
        raise InvalidTransition(
            f"only a booking waiting for its deposit can be (this one is {appt.status})"
        )
    online = pending_payment_for(session, appt.id)
    if online is not None:
        online.status = PaymentStatus.CANCELED
        close_payment(session, online, now)
    return appt


# ---------------------------------------------------------------- asking the gateway


def sync_payment(session: Session, payment_id: int, gateway: PaymentGateway, now: datetime):
    """Apply the gateway's current state of a payment (the job behind every event)."""
    payment = session.get(Payment, payment_id)
    if payment is None or payment.provider_ref is None:
        return "nothing to sync"
    state = gateway.lookup(payment.provider_ref).state  # no row locks held during the call
    if state is IntentState.SUCCEEDED:
        return confirm_payment(session, payment.id, now)
    if state in (IntentState.FAILED, IntentState.CANCELED):
        return fail_payment(session, payment.id, now)
    return f"still {state}"


def release_unless_paid(
    session: Session, appointment_id: int, gateways: Gateways, now: datetime
) -> str:
    """The hold's deadline: ask the gateway before giving the slot away.

    If the customer paid in time but the event (or its job) has not reached us, the
    payment is confirmed instead of released and refunded as late.
    """
    payment = session.scalar(
        select(Payment).where(
            Payment.appointment_id == appointment_id, Payment.status == PaymentStatus.PENDING
        )
    )
    if payment is not None and payment.provider_ref and payment.provider != SANDBOX:
        intent = gateways(payment.provider).lookup(payment.provider_ref)
        if intent.state is IntentState.SUCCEEDED:
            return confirm_payment(session, payment.id, now)
    return "released" if release_hold(session, appointment_id, now=now) else "not released"


def cancel_at_gateway(session: Session, payment_id: int, gateway: PaymentGateway, now: datetime):
    """Close the gateway side of a released payment, so the customer cannot pay any more.

    If the customer paid before the cancellation reached the gateway, the money is
    there: that is a late payment, refunded in full (``confirm_payment``). An intent that
    can be neither cancelled nor has succeeded (still processing) is tried again.
    """
    payment = session.get(Payment, payment_id)
    if payment is None or payment.provider_closed_at is not None:
        return "nothing to cancel"
    state = gateway.cancel(payment.provider_ref)
    if state is IntentState.SUCCEEDED:
        outcome = confirm_payment(session, payment.id, now)
    elif state is IntentState.CANCELED:
        outcome = "canceled"
    else:
        raise GatewayError(f"intent {payment.provider_ref} is {state}: cannot close it yet")
    payment = lock_row(session, Payment, payment_id)
    payment.provider_closed_at = now
    return outcome
