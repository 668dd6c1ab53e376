"""The whole data model, in one module (docs/architecture.md says why).

Invariants are database constraints wherever one can express them:

1. no two active appointments overlap on one resource: ``ex_appointments_no_overlap``
   (PostgreSQL exclusion constraint; ``recovery.availability.overlap`` also checks in code
   for SQLite);
2. one ``sent`` offer per opening and one per customer: partial unique indexes;
3. one ``open``/``filled`` opening per resource and start: partial unique index;
4. each provider delivery once: unique provider ids on messages, payments, provider_events.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, time

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from recovery.db import UTCDateTime, db, utcnow


class AppointmentStatus(enum.StrEnum):
    PENDING_PAYMENT = "pending_payment"
    BOOKED = "booked"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


ACTIVE_APPOINTMENT_STATUSES = (AppointmentStatus.PENDING_PAYMENT, AppointmentStatus.BOOKED)


class OpeningStatus(enum.StrEnum):
    OPEN = "open"
    FILLED = "filled"
    EXPIRED = "expired"


class OfferStatus(enum.StrEnum):
    SENT = "sent"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"  # recorded and reserved against the payment; the gateway call is due
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the gateway refused it; the reserved amount is released again


class DepositKind(enum.StrEnum):
    NONE = "none"
    FIXED = "fixed"  # deposit_value is an amount in minor units
    PERCENT = "percent"  # deposit_value is a whole percentage of the price
    FULL = "full"  # full prepayment of the price


class StaffRole(enum.StrEnum):
    OWNER = "owner"
    STAFF = "staff"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"  # written by the domain, waiting for the send job
    # The send job took it and may have called the provider: committed before the call, so
    # a later attempt looks the text up at the provider before sending it again.
    SENDING = "sending"
    SENT = "sent"  # accepted by the provider
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPPRESSED = "suppressed"  # not sent: the number opted out after it was queued
    CANCELLED = "cancelled"  # not sent: no longer true (its offer ended first); ``error`` says why
    RECEIVED = "received"  # inbound


def _in(column: str, enum_cls: type[enum.StrEnum]) -> str:
    """SQL text for a CHECK that ``column`` holds one of an enum's values."""
    values = ", ".join(f"'{member.value}'" for member in enum_cls)
    return f"{column} IN ({values})"


def _status(default: enum.StrEnum) -> Mapped[str]:
    return mapped_column(sa.String(20), nullable=False, default=default.value)


def _active_sql() -> str:
    statuses = ", ".join(f"'{s.value}'" for s in ACTIVE_APPOINTMENT_STATUSES)
    return f"status IN ({statuses})"


def new_manage_token() -> str:
    """The unguessable token of a booking's manage page (128 random bits)."""
    return secrets.token_urlsafe(16)


class Shop(db.Model):
    __tablename__ = "shops"
    __table_args__ = (
        sa.CheckConstraint("offer_ttl_minutes > 0", name="offer_ttl_positive"),
        sa.CheckConstraint("cooldown_hours >= 0", name="cooldown_not_negative"),
        sa.CheckConstraint("min_lead_minutes >= 0", name="lead_not_negative"),
        sa.CheckConstraint("payment_hold_minutes > 0", name="hold_positive"),
        sa.CheckConstraint(
            "late_refund_percent BETWEEN 0 AND 100", name="late_refund_percent_range"
        ),
        sa.CheckConstraint("full_refund_hours >= 0", name="full_refund_hours_not_negative"),
        sa.CheckConstraint("booking_hold_hours > 0", name="booking_hold_positive"),
        sa.CheckConstraint("self_cancel_cutoff_hours >= 0", name="self_cancel_not_negative"),
        sa.CheckConstraint("reminder_hours >= 0", name="reminder_hours_not_negative"),
        # Inbound texts find their shop by the number written to: one shop per own number.
        # (Shops without one share the deployment's TWILIO_FROM_NUMBER; that no shop claims
        # the default as its own is checked by the settings form, admin/settings.py.)
        sa.Index(
            "uq_shops_sms_from_number",
            "sms_from_number",
            unique=True,
            postgresql_where=sa.text("sms_from_number IS NOT NULL"),
            sqlite_where=sa.text("sms_from_number IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="Europe/London")
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False, default="GBP")
    locale: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="en_GB")
    # The number customers text; empty means the deployment's TWILIO_FROM_NUMBER.
    sms_from_number: Mapped[str | None] = mapped_column(sa.String(20))
    contact_phone: Mapped[str | None] = mapped_column(sa.String(20))
    # Recovery policy.
    offer_ttl_minutes: Mapped[int] = mapped_column(nullable=False, default=15)
    cooldown_hours: Mapped[int] = mapped_column(nullable=False, default=24)
    min_lead_minutes: Mapped[int] = mapped_column(nullable=False, default=60)
    payment_hold_minutes: Mapped[int] = mapped_column(nullable=False, default=15)
    require_prior_settled_booking: Mapped[bool] = mapped_column(nullable=False, default=False)
    # Refund policy: full refund at least this many hours before the start, else a share.
    full_refund_hours: Mapped[int] = mapped_column(nullable=False, default=24)
    late_refund_percent: Mapped[int] = mapped_column(nullable=False, default=50)
    # An ordinary booking's deposit is due within this many hours (never past its start).
    booking_hold_hours: Mapped[int] = mapped_column(nullable=False, default=24)
    # Customers may cancel from their manage link until this many hours before the start.
    self_cancel_cutoff_hours: Mapped[int] = mapped_column(nullable=False, default=0)
    # Customer texts: which ones the shop sends, and when a reminder goes (0: none).
    reminder_hours: Mapped[int] = mapped_column(nullable=False, default=24)
    send_confirmations: Mapped[bool] = mapped_column(nullable=False, default=True)
    send_reminders: Mapped[bool] = mapped_column(nullable=False, default=True)
    send_offers: Mapped[bool] = mapped_column(nullable=False, default=True)
    # Offers and reminders falling due between these wall-clock times (the shop's zone)
    # wait until the end; equal times mean no quiet hours.
    quiet_hours_start: Mapped[time] = mapped_column(sa.Time, nullable=False, default=time(21, 0))
    quiet_hours_end: Mapped[time] = mapped_column(sa.Time, nullable=False, default=time(8, 0))
    # Every staff member of the shop must sign in with a one-time code as well.
    require_two_factor: Mapped[bool] = mapped_column(nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    def __str__(self) -> str:
        return self.name


class StaffUser(UserMixin, db.Model):
    __tablename__ = "staff_users"
    __table_args__ = (sa.CheckConstraint(_in("role", StaffRole), name="role_valid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False, index=True)
    email: Mapped[str] = mapped_column(sa.String(254), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(sa.String(120), nullable=False, default="")
    password_hash: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    role: Mapped[str] = _status(StaffRole.STAFF)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    # Kept in each signed-in session; raising it (sign-out, a password reset) ends every
    # other session of this user at their next request.
    session_version: Mapped[int] = mapped_column(nullable=False, default=1)
    # Two-factor sign-in: the TOTP secret, encrypted at rest; enabled once confirmed.
    totp_secret: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    shop: Mapped[Shop] = relationship()

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    @property
    def is_owner(self) -> bool:
        return self.role == StaffRole.OWNER

    def __str__(self) -> str:
        return self.email


class Resource(db.Model):
    """The chair, room or person a booking occupies."""

    __tablename__ = "resources"
    __table_args__ = (sa.UniqueConstraint("shop_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)

    shop: Mapped[Shop] = relationship()

    def __str__(self) -> str:
        return self.name


class Service(db.Model):
    __tablename__ = "services"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "name"),
        sa.CheckConstraint("duration_minutes > 0", name="duration_positive"),
        sa.CheckConstraint("price_minor >= 0", name="price_not_negative"),
        sa.CheckConstraint(_in("deposit_kind", DepositKind), name="deposit_kind_valid"),
        sa.CheckConstraint(
            "deposit_kind <> 'percent' OR deposit_value BETWEEN 0 AND 100",
            name="deposit_percent_range",
        ),
        sa.CheckConstraint("deposit_value >= 0", name="deposit_value_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    duration_minutes: Mapped[int] = mapped_column(nullable=False)
    price_minor: Mapped[int] = mapped_column(nullable=False)
    deposit_kind: Mapped[str] = _status(DepositKind.NONE)
    deposit_value: Mapped[int] = mapped_column(nullable=False, default=0)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)

    shop: Mapped[Shop] = relationship()

    def __str__(self) -> str:
        return self.name


class Customer(db.Model):
    __tablename__ = "customers"
    __table_args__ = (
        sa.UniqueConstraint("shop_id", "phone"),
        # The eligibility query walks a shop's customers in this order and stops at the
        # first match: with the index it reads a handful of rows, not the whole shop (B5).
        # (PostgreSQL only: SQLite has no NULLS LAST in indexes, and demo shops are small.)
        sa.Index(
            "ix_customers_shop_eligibility_order",
            "shop_id",
            sa.text("last_settled_at DESC NULLS LAST"),
            "id",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    phone: Mapped[str] = mapped_column(sa.String(20), nullable=False)  # E.164
    sms_opt_in: Mapped[bool] = mapped_column(nullable=False, default=False)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Start of the customer's latest settled (paid or completed) booking; kept by
    # recovery.payments.requests.mark_settled, so eligibility ordering needs no aggregate
    # over appointments.
    last_settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    shop: Mapped[Shop] = relationship()

    def __str__(self) -> str:
        return f"{self.name} ({self.phone})"


class Appointment(db.Model):
    __tablename__ = "appointments"
    __table_args__ = (
        sa.CheckConstraint(_in("status", AppointmentStatus), name="status_valid"),
        sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        postgresql.ExcludeConstraint(
            ("resource_id", "="),
            (sa.func.tstzrange(sa.column("starts_at"), sa.column("ends_at"), "[)"), "&&"),
            using="gist",
            where=sa.text(_active_sql()),
            name="ex_appointments_no_overlap",
        ).ddl_if(dialect="postgresql"),
        sa.Index("ix_appointments_customer_starts", "customer_id", "starts_at"),
        sa.Index("ix_appointments_shop_starts", "shop_id", "starts_at"),
        sa.Index(
            "ix_appointments_payment_due",
            "payment_due_at",
            postgresql_where=sa.text("status = 'pending_payment'"),
            sqlite_where=sa.text("status = 'pending_payment'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False)
    resource_id: Mapped[int] = mapped_column(sa.ForeignKey("resources.id"), nullable=False)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), nullable=False)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id"), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = _status(AppointmentStatus.BOOKED)
    source_slot_opening_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("slot_openings.id", use_alter=True), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # A booking waiting for its deposit is released if not paid by then.
    payment_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancellation_reason: Mapped[str | None] = mapped_column(sa.String(200))
    # Why cancelling this booking did or did not open a slot for recovery.
    recovery_note: Mapped[str | None] = mapped_column(sa.String(200))
    # The customer's manage link (``/b/<token>``): view and cancel without an account.
    manage_token: Mapped[str] = mapped_column(
        sa.String(64), nullable=False, unique=True, default=new_manage_token
    )
    # Staff let this booking go ahead without its deposit (who, when and why).
    deposit_waived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deposit_waived_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"))
    deposit_waived_reason: Mapped[str | None] = mapped_column(sa.String(200))

    shop: Mapped[Shop] = relationship()
    resource: Mapped[Resource] = relationship()
    customer: Mapped[Customer] = relationship()
    service: Mapped[Service] = relationship()
    payments: Mapped[list[Payment]] = relationship(
        back_populates="appointment", order_by="Payment.id"
    )

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_APPOINTMENT_STATUSES

    def __str__(self) -> str:
        return f"#{self.id} {self.starts_at:%Y-%m-%d %H:%M} UTC"


def new_payment_token() -> str:
    """The unguessable token of a payment's "Complete payment" page (144 random bits)."""
    return secrets.token_urlsafe(18)


class Payment(db.Model):
    """A deposit asked of one booking.

    ``provider_ref`` is the gateway's own id (a Stripe PaymentIntent), set when the
    customer first opens the payment page; ``token`` is what the page's URL carries.
    ``refunded_minor`` counts refunds requested and succeeded, so the CHECK constraint
    refuses any refund that would exceed what was paid, even under concurrency.
    """

    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_ref"),
        sa.CheckConstraint(_in("status", PaymentStatus), name="status_valid"),
        sa.CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refund_within_amount"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("appointments.id"), nullable=False, index=True
    )
    provider: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    token: Mapped[str] = mapped_column(
        sa.String(64), nullable=False, unique=True, default=new_payment_token
    )
    amount_minor: Mapped[int] = mapped_column(nullable=False)
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    status: Mapped[str] = _status(PaymentStatus.PENDING)
    refunded_minor: Mapped[int] = mapped_column(nullable=False, default=0)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the gateway's side was closed (intent cancelled) after a release; None while
    # a cancellation is still owed. The sweep retries owed cancellations.
    provider_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A payment taken at the desk (provider ``desk``): the staff member and their note.
    recorded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )

    appointment: Mapped[Appointment] = relationship(back_populates="payments")
    refunds: Mapped[list[Refund]] = relationship(
        back_populates="payment", order_by="Refund.id", cascade="all, delete-orphan"
    )

    @property
    def refundable_minor(self) -> int:
        if self.status != PaymentStatus.SUCCEEDED:
            return 0
        return self.amount_minor - self.refunded_minor


class Refund(db.Model):
    """One refund of (part of) a payment, recorded before the gateway is called.

    ``idempotency_key`` is sent to the gateway, so a retried job never refunds twice.
    """

    __tablename__ = "refunds"
    __table_args__ = (
        sa.CheckConstraint(_in("status", RefundStatus), name="status_valid"),
        sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("payments.id"), nullable=False, index=True
    )
    amount_minor: Mapped[int] = mapped_column(nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    status: Mapped[str] = _status(RefundStatus.PENDING)
    idempotency_key: Mapped[str] = mapped_column(sa.String(80), nullable=False, unique=True)
    provider_ref: Mapped[str | None] = mapped_column(sa.String(255))
    error: Mapped[str | None] = mapped_column(sa.String(255))
    requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    payment: Mapped[Payment] = relationship(back_populates="refunds")


class SlotOpening(db.Model):
    __tablename__ = "slot_openings"
    __table_args__ = (
        sa.CheckConstraint(_in("status", OpeningStatus), name="status_valid"),
        sa.Index(
            "uq_slot_openings_live_resource_start",
            "resource_id",
            "starts_at",
            unique=True,
            postgresql_where=sa.text("status IN ('open', 'filled')"),
            sqlite_where=sa.text("status IN ('open', 'filled')"),
        ),
        sa.Index("ix_slot_openings_shop_status", "shop_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False)
    resource_id: Mapped[int] = mapped_column(sa.ForeignKey("resources.id"), nullable=False)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("services.id"), nullable=False)
    # One opening per cancelled booking, however often the cancellation is retried.
    source_appointment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("appointments.id"), nullable=False, unique=True
    )
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = _status(OpeningStatus.OPEN)
    outcome_note: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    filled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    shop: Mapped[Shop] = relationship()
    resource: Mapped[Resource] = relationship()
    service: Mapped[Service] = relationship()
    source_appointment: Mapped[Appointment] = relationship(foreign_keys=[source_appointment_id])
    offers: Mapped[list[SlotOffer]] = relationship(
        back_populates="opening", order_by="SlotOffer.id"
    )

    def __str__(self) -> str:
        return f"Opening #{self.id}"


class SlotOffer(db.Model):
    __tablename__ = "slot_offers"
    __table_args__ = (
        sa.UniqueConstraint("slot_opening_id", "customer_id"),
        sa.CheckConstraint(_in("status", OfferStatus), name="status_valid"),
        sa.CheckConstraint("channel IN ('sms')", name="channel_valid"),
        # A YES is never ambiguous: one live offer per opening and per customer.
        sa.Index(
            "uq_slot_offers_live_per_opening",
            "slot_opening_id",
            unique=True,
            postgresql_where=sa.text("status = 'sent'"),
            sqlite_where=sa.text("status = 'sent'"),
        ),
        sa.Index(
            "uq_slot_offers_live_per_customer",
            "customer_id",
            unique=True,
            postgresql_where=sa.text("status = 'sent'"),
            sqlite_where=sa.text("status = 'sent'"),
        ),
        # Shops may share a sender number: one live offer per phone and sender number, so
        # a YES texted to that number can only mean one offer, of one shop.
        sa.Index(
            "uq_slot_offers_live_per_phone_sender",
            "phone",
            "sender_number",
            unique=True,
            postgresql_where=sa.text("status = 'sent'"),
            sqlite_where=sa.text("status = 'sent'"),
        ),
        sa.Index("ix_slot_offers_customer_sent", "customer_id", "sent_at"),
        sa.Index(
            "ix_slot_offers_due",
            "expires_at",
            postgresql_where=sa.text("status = 'sent'"),
            sqlite_where=sa.text("status = 'sent'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    slot_opening_id: Mapped[int] = mapped_column(sa.ForeignKey("slot_openings.id"), nullable=False)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), nullable=False)
    channel: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="sms")
    # Where the offer's text goes and comes from (the customer's phone, the shop's sender).
    phone: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    sender_number: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    status: Mapped[str] = _status(OfferStatus.SENT)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    opening: Mapped[SlotOpening] = relationship(back_populates="offers")
    customer: Mapped[Customer] = relationship()

    def __str__(self) -> str:
        return f"Offer #{self.id}"


class Message(db.Model):
    """Every SMS in and out: the sandbox outbox and the log."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.CheckConstraint(_in("direction", Direction), name="direction_valid"),
        sa.CheckConstraint(_in("status", MessageStatus), name="status_valid"),
        sa.Index("ix_messages_shop_created", "shop_id", "created_at"),
        sa.Index(
            "ix_messages_queued",
            "created_at",
            postgresql_where=sa.text("status = 'queued'"),
            sqlite_where=sa.text("status = 'queued'"),
        ),
        sa.Index(
            "ix_messages_sending",
            "sending_at",
            postgresql_where=sa.text("status = 'sending'"),
            sqlite_where=sa.text("status = 'sending'"),
        ),
        # Texts not sent yet, by conversation: a text waits for the earlier ones to the
        # same phone from the same number (``outbox.claim``).
        sa.Index(
            "ix_messages_unsent_conversation",
            "to_number",
            "from_number",
            "id",
            postgresql_where=sa.text("status IN ('queued', 'sending')"),
            sqlite_where=sa.text("status IN ('queued', 'sending')"),
        ),
        sa.CheckConstraint("send_attempts >= 0", name="send_attempts_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unknown senders have no shop or customer; the message is still kept.
    shop_id: Mapped[int | None] = mapped_column(sa.ForeignKey("shops.id"))
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    slot_offer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("slot_offers.id"), index=True)
    appointment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("appointments.id"), index=True)
    direction: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    from_number: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    to_number: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    body: Mapped[str] = mapped_column(sa.Text, nullable=False)
    purpose: Mapped[str] = mapped_column(sa.String(30), nullable=False)
    provider_sid: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = _status(MessageStatus.QUEUED)
    error: Mapped[str | None] = mapped_column(sa.String(255))
    segments: Mapped[int] = mapped_column(nullable=False, default=1)
    cost_estimate_minor: Mapped[int] = mapped_column(nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The send job's claims (``messaging.outbox.claim``): how many, and when the first one
    # was made, which bounds the provider lookup after an unclear failure.
    send_attempts: Mapped[int] = mapped_column(nullable=False, default=0)
    sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the provider accepted it

    shop: Mapped[Shop | None] = relationship()
    customer: Mapped[Customer | None] = relationship()
    offer: Mapped[SlotOffer | None] = relationship()


class BlockSource(enum.StrEnum):
    MANUAL = "manual"  # entered by staff
    GOOGLE = "google"  # synced from a Google Calendar (read-only here)
    ICS = "ics"  # synced from an iCal feed (read-only here)


class BusyBlock(db.Model):
    """Time a resource (or, with no resource, the whole shop) is not available.

    Booking and recovery both obey it (``recovery.availability.blocks``). Manual blocks on
    one resource never overlap (``ex_busy_blocks_manual_no_overlap``, PostgreSQL; checked
    in code on SQLite); synced blocks mirror a calendar and are unique by their event id
    within their connection.
    """

    __tablename__ = "busy_blocks"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        sa.CheckConstraint(_in("source", BlockSource), name="source_valid"),
        sa.CheckConstraint(
            "(source = 'manual') = (external_id IS NULL)", name="external_id_iff_synced"
        ),
        sa.UniqueConstraint("source", "connection_id", "external_id"),
        postgresql.ExcludeConstraint(
            ("shop_id", "="),
            (sa.literal_column("coalesce(resource_id, 0)"), "="),
            (sa.func.tstzrange(sa.column("starts_at"), sa.column("ends_at"), "[)"), "&&"),
            using="gist",
            where=sa.text("source = 'manual'"),
            name="ex_busy_blocks_manual_no_overlap",
        ).ddl_if(dialect="postgresql"),
        sa.Index("ix_busy_blocks_shop_range", "shop_id", "starts_at", "ends_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False)
    # None: the whole shop is closed then.
    resource_id: Mapped[int | None] = mapped_column(sa.ForeignKey("resources.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(200), nullable=False, default="")
    source: Mapped[str] = _status(BlockSource.MANUAL)
    # Synced blocks: the calendar connection they came from and the event's id there.
    connection_id: Mapped[int | None] = mapped_column(sa.ForeignKey("calendar_connections.id"))
    external_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    shop: Mapped[Shop] = relationship()
    resource: Mapped[Resource | None] = relationship()

    @property
    def is_manual(self) -> bool:
        return self.source == BlockSource.MANUAL

    def __str__(self) -> str:
        return self.reason or f"busy block #{self.id}"


class CalendarProvider(enum.StrEnum):
    GOOGLE = "google"  # OAuth2, read-only scope; the secret is the refresh token
    ICS = "ics"  # a secret iCal feed; the secret is its URL


class ConnectionStatus(enum.StrEnum):
    CONNECTED = "connected"  # syncing; a passing network error only sets last_error
    ERROR = "error"  # the grant was revoked or the feed refused: the owner must reconnect


class CalendarConnection(db.Model):
    """One resource's external calendar, mirrored into its busy blocks
    (``recovery.availability.calendars``). The refresh token or feed URL is a secret:
    stored only encrypted (Fernet, keys from ``CALENDAR_TOKEN_KEYS``)."""

    __tablename__ = "calendar_connections"
    __table_args__ = (
        sa.UniqueConstraint("resource_id"),
        sa.CheckConstraint(_in("provider", CalendarProvider), name="provider_valid"),
        sa.CheckConstraint(_in("status", ConnectionStatus), name="status_valid"),
        sa.CheckConstraint("block_count >= 0", name="block_count_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False, index=True)
    resource_id: Mapped[int] = mapped_column(sa.ForeignKey("resources.id"), nullable=False)
    provider: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    status: Mapped[str] = _status(ConnectionStatus.CONNECTED)
    secret: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    calendar_id: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="primary")
    timezone: Mapped[str | None] = mapped_column(sa.String(64))  # the calendar's own zone
    sync_token: Mapped[str | None] = mapped_column(sa.Text)
    # End of the window the last full sync read: incremental syncs keep within it, and a
    # full sync runs again once the 60-day window has moved on by a day.
    window_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(nullable=False, default=0)  # in a row, for backoff
    block_count: Mapped[int] = mapped_column(nullable=False, default=0)
    connected_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    shop: Mapped[Shop] = relationship()
    resource: Mapped[Resource] = relationship()

    def __str__(self) -> str:
        return f"{self.provider} calendar of {self.resource}"


class Reminder(db.Model):
    """A reminder sent for one start time of one booking: the unique pair makes it exactly
    once, and a booking moved to a new time is reminded again at that time."""

    __tablename__ = "reminders"
    __table_args__ = (sa.UniqueConstraint("appointment_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(sa.ForeignKey("appointments.id"), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    message_id: Mapped[int | None] = mapped_column(sa.ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class ProviderEvent(db.Model):
    """Deliveries already handled (Stripe event ids and the like): each takes effect once."""

    __tablename__ = "provider_events"
    __table_args__ = (sa.UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20), nullable=False)
    event_id: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(sa.String(100), nullable=False, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class RecoveryCode(db.Model):
    """A single-use two-factor recovery code, stored only as a hash."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(
        sa.ForeignKey("staff_users.id"), nullable=False, index=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class AuditEvent(db.Model):
    """One staff action that moved money or steered recovery, written in the same
    transaction as the action. Append-only: triggers (migration 0008) refuse any UPDATE or
    DELETE of a row, whoever asks."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_events_shop_created", "shop_id", "created_at"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    shop_id: Mapped[int] = mapped_column(sa.ForeignKey("shops.id"), nullable=False)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_users.id"))
    # Who, as they were known then (kept even if the account is renamed).
    staff_email: Mapped[str] = mapped_column(sa.String(254), nullable=False, default="")
    action: Mapped[str] = mapped_column(sa.String(50), nullable=False)
    target_type: Mapped[str] = mapped_column(sa.String(50), nullable=False, default="")
    target_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    before: Mapped[dict | None] = mapped_column(
        sa.JSON().with_variant(postgresql.JSONB, "postgresql")
    )
    after: Mapped[dict | None] = mapped_column(
        sa.JSON().with_variant(postgresql.JSONB, "postgresql")
    )
    note: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    shop: Mapped[Shop] = relationship()
    staff: Mapped[StaffUser | None] = relationship()
