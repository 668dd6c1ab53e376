"""What customers read: every SMS text in one place, in the shop's time zone and currency.

Texts are English; the shop's locale formats times and money. Each fits one GSM-7 segment
(checked by the tests), because a second segment doubles the cost of every offer.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time

from recovery.messaging.gsm import to_gsm7
from recovery.models import DepositKind, Service, Shop
from recovery.payments.money import deposit_minor, format_money


def when_words(starts_at: datetime, now: datetime, shop: Shop) -> str:
    """``today at 10:30``, ``tomorrow at 10:30``, ``on Friday at 10:30``, ``on 4 Dec at 10:30``.

    Days are counted on the shop's calendar, so "tomorrow" stays right across midnight
    and daylight-saving changes.
    """
    zone = ZoneInfo(shop.timezone)
    local = starts_at.astimezone(zone)
    days = (local.date() - now.astimezone(zone).date()).days
    clock = format_time(local, format="short", locale=shop.locale)
    if days == 0:
        day = "today"
    elif days == 1:
        day = "tomorrow"
    elif 1 < days < 7:
        day = "on " + format_date(local, format="EEEE", locale="en")
    else:
        day = "on " + format_date(local, format="EEE d MMM", locale="en")
    return to_gsm7(f"{day} at {clock}")


def payment_words(service: Service, shop: Shop) -> str:
    amount = deposit_minor(service)
    money = format_money(amount, shop.currency, shop.locale)
    if amount == 0:
        return "No deposit needed."
    if DepositKind(service.deposit_kind) is DepositKind.FULL:
        return f"Full payment of {money} applies."
    return f"{money} deposit applies."


def _with_shop(shop: Shop, text: str, limit: int = 160) -> str:
    """Prefix the shop's name so customers know who texts them, trimmed to fit one SMS."""
    text = to_gsm7(text)
    room = limit - len(text) - 2
    name = to_gsm7(shop.name)
    if room < 4:
        return text
    if len(name) > room:
        name = name[: room - 1].rstrip() + "."
    return f"{name}: {text}"


def offer(shop: Shop, service: Service, starts_at: datetime, now: datetime) -> str:
    when = when_words(starts_at, now, shop)
    return _with_shop(
        shop, f"A slot opened {when}. Reply YES to book. {payment_words(service, shop)}"
    )


def accepted_pay(shop: Shop, amount_minor: int, minutes: int, link: str) -> str:
    money = format_money(amount_minor, shop.currency, shop.locale)
    return _with_shop(shop, f"It's yours! Pay the {money} within {minutes} min to confirm: {link}")


def accepted_booked(shop: Shop, starts_at: datetime, now: datetime) -> str:
    return _with_shop(shop, f"You're booked {when_words(starts_at, now, shop)}. See you then!")


def paid_booked(shop: Shop, starts_at: datetime, now: datetime) -> str:
    return _with_shop(shop, f"Payment received. You're booked {when_words(starts_at, now, shop)}.")


# The booking's own texts. None asks for a reply: CANCEL is a carrier opt-out word, so the
# way to cancel is the manage link, never "reply CANCEL".


def confirmation(shop: Shop, starts_at: datetime, now: datetime, link: str, paid: bool) -> str:
    """A booking is confirmed (``booked``): when, and the link to manage or cancel it."""
    start = "Payment received. You're" if paid else "You're"
    when = when_words(starts_at, now, shop)
    return _with_shop(shop, f"{start} booked {when}. Manage or cancel: {link}")


def payment_request(
    shop: Shop, starts_at: datetime, now: datetime, amount_minor: int, due_at: datetime, link: str
) -> str:
    """A new booking waits for its deposit: how much, by when, and where to pay."""
    money = format_money(amount_minor, shop.currency, shop.locale)
    when = when_words(starts_at, now, shop)
    if due_at >= starts_at:  # the hold runs up to the start itself
        due = "before then"
    else:  # "by 18:30 today", "by tomorrow at 10:00", "by Friday at 10:00"
        words = when_words(due_at, now, shop)
        today = words.removeprefix("today at ")
        due = f"by {today} today" if today != words else "by " + words.removeprefix("on ")
    return _with_shop(shop, f"To confirm your booking {when}, pay {money} {due}: {link}")


def booking_unpaid_released(shop: Shop, starts_at: datetime, now: datetime) -> str:
    when = when_words(starts_at, now, shop)
    return _with_shop(shop, f"Your booking {when} was released: the deposit wasn't paid in time.")


def cancelled(shop: Shop, starts_at: datetime, now: datetime) -> str:
    return _with_shop(shop, f"Your booking {when_words(starts_at, now, shop)} is cancelled.")


def moved(shop: Shop, starts_at: datetime, now: datetime, link: str) -> str:
    when = when_words(starts_at, now, shop)
    return _with_shop(shop, f"Your booking has moved to {when}. Manage or cancel: {link}")


def late_payment_refunded(shop: Shop, amount_minor: int) -> str:
    money = format_money(amount_minor, shop.currency, shop.locale)
    text = f"Your payment came after the slot was released, so we're refunding {money} in full."
    return _with_shop(shop, text)


def cancelled_refunded(shop: Shop, starts_at: datetime, now: datetime, amount_minor: int) -> str:
    money = format_money(amount_minor, shop.currency, shop.locale)
    when = when_words(starts_at, now, shop)
    return _with_shop(shop, f"Your booking {when} is cancelled. We're refunding {money} to you.")


def declined() -> str:
    return "OK, no problem. We'll offer it to someone else."


def taken() -> str:
    return "Sorry, this slot has just been taken."


def expired() -> str:
    return "Sorry, that offer has expired, so the slot went to the next person."


def no_offer() -> str:
    return "You have no open offer right now. We'll text you when a slot opens."


def already_yours() -> str:
    return "This slot is already yours."


def hold_released(shop: Shop, starts_at: datetime, now: datetime, why: str = "expired") -> str:
    """The winner lost their hold: the payment timed out, failed, or staff cancelled."""
    if why == "failed":
        return _with_shop(shop, "Your payment didn't go through, so the slot was released.")
    if why == "cancelled":
        when = when_words(starts_at, now, shop)
        return _with_shop(shop, f"Your booking {when} was cancelled. No payment is due.")
    return _with_shop(shop, "We didn't receive your payment in time, so the slot was released.")


def opted_out(shop: Shop) -> str:
    return _with_shop(
        shop, "You're unsubscribed and will get no more messages. Reply START to rejoin."
    )


def opted_in(shop: Shop) -> str:
    return _with_shop(shop, "You're subscribed again. Reply STOP to unsubscribe.")


def help_text(shop: Shop) -> str:
    contact = f" Call {shop.contact_phone}." if shop.contact_phone else ""
    return _with_shop(
        shop, f"Reply YES to take an offered slot, NO to pass.{contact} Reply STOP to opt out."
    )


def short_help() -> str:
    return "Reply YES to book the offered slot, NO to pass, HELP for help, STOP to opt out."


def unknown_number() -> str:
    return "Sorry, we don't recognise this number. Please contact the shop directly."


def reminder(shop: Shop, starts_at: datetime, now: datetime, link: str) -> str:
    """The reminder before the start, with the manage link (never "reply CANCEL")."""
    when = when_words(starts_at, now, shop)
    return _with_shop(shop, f"Reminder: you're booked {when}. Manage or cancel: {link}")


def withdrawn(shop: Shop, starts_at: datetime, now: datetime) -> str:
    """Staff blocked the time of a slot offered to this customer: the offer is off."""
    when = when_words(starts_at, now, shop)
    return _with_shop(shop, f"Sorry, the slot we offered {when} is no longer available.")
