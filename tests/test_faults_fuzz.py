"""Fuzzed inbound SMS: whatever a correctly signed request carries, the webhook never answers
with a 5xx and changes nothing beyond logging the message and its answer.

Bodies are random unicode (control characters included), empty or very long; numbers are
malformed, foreign, very long or missing; fields are missing or extra. Bodies that are a
keyword from a known customer (YES, NO, STOP, START) are left out: acting on them is the
point of the webhook and is tested elsewhere. Everything else must leave the domain alone.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from twilio.request_validator import RequestValidator

from recovery.booking import cancellation
from recovery.db import db
from recovery.models import Direction, Message
from recovery.offers import offering
from recovery.offers.inbound import Keyword, classify
from tests.scenario import scene
from tests.twilio_signing import AUTH_TOKEN, SHOP_NUMBER

URL = "http://localhost/webhooks/twilio/sms"
KNOWN = "+447911200001"  # the offered customer (set in the fixture)
ACTING = (Keyword.YES, Keyword.NO, Keyword.STOP, Keyword.START)
MISSING = object()


def texts(**kw):
    # NUL included: PostgreSQL text cannot hold it, so the webhook must drop it, not 500.
    return st.text(alphabet=st.characters(codec="utf-8"), **kw)


bodies = st.one_of(
    texts(max_size=40),
    texts(min_size=150, max_size=2000),
    st.sampled_from(
        ["", " ", "\n", "\t\r", "y\u0301es", "\uff39\uff25\uff33", "\u2067YES", "🙂" * 100]
    ),
    st.just("x" * 10_000),
)
numbers = st.one_of(
    st.just(KNOWN),
    st.sampled_from(
        [
            "",
            "+",
            "+44",
            "07911 200001",
            "+447911200001 ",
            "tel:+447911200001",
            "+4479112000011111111111111111111",
            "+٤٤٧٩١١٢٠٠٠٠١",  # Arabic-Indic digits
            "whatsapp:+447911200001",
            "+1 (555) 010-9999",
            "NaN",
        ]
    ),
    texts(max_size=64),
    st.from_regex(r"\+[0-9]{1,20}", fullmatch=True),
)
sids = st.one_of(
    st.from_regex(r"SM[0-9a-f]{32}", fullmatch=True),
    texts(min_size=1, max_size=100),
    st.just(""),
)
extra_fields = st.dictionaries(
    texts(min_size=1, max_size=20).filter(lambda k: k not in ("MessageSid", "From", "To")),
    texts(max_size=50),
    max_size=4,
)


def maybe(strategy):
    return st.one_of(st.just(MISSING), strategy)


@pytest.fixture
def world(session, clock, recorder):
    """A shop whose first customer (KNOWN) holds a live offer."""
    s = scene(session, clock.now)
    s.customers[0].phone = KNOWN
    opening = cancellation.cancel_appointment(session, s.booking.id, now=clock.now).opening
    offering.offer_next(session, opening.id, now=clock.now)
    session.commit()
    recorder.clear()
    return s


def domain_fingerprint(session) -> str:
    """Every row of every table except the message log."""
    session.flush()
    parts = []
    for table in db.metadata.sorted_tables:
        if table.name != Message.__tablename__:
            rows = session.execute(text(f"SELECT t::text FROM {table.name} t ORDER BY 1"))
            parts.extend(rows.scalars())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@settings(
    max_examples=250,
    deadline=None,
    database=None,  # no example files left in the repository
    # One world for all examples is what we want: examples pile up messages in it, and
    # each must still leave the domain as it found it.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sid=maybe(sids),
    sender=maybe(numbers),
    to=maybe(st.one_of(st.just(SHOP_NUMBER), numbers)),
    body=maybe(bodies),
    extra=extra_fields,
)
def test_fuzzed_inbound_sms_never_fails_and_changes_nothing(
    client, session, world, recorder, sid, sender, to, body, extra
):
    fields = {"MessageSid": sid, "From": sender, "To": to, "Body": body}
    params = {**extra, **{k: v for k, v in fields.items() if v is not MISSING}}
    if params.get("From") == KNOWN:
        assume(classify(params.get("Body", "")) not in ACTING)
    before = domain_fingerprint(session)
    logged_before = session.scalar(select(func.count()).select_from(Message))

    signature = RequestValidator(AUTH_TOKEN).compute_signature(URL, params)
    response = client.post(
        "/webhooks/twilio/sms", data=params, headers={"X-Twilio-Signature": signature}
    )

    assert response.status_code < 500, response.data
    assert domain_fingerprint(session) == before
    assert recorder.effects == []
    new = session.scalars(select(Message).order_by(Message.id).offset(logged_before)).all()
    if response.status_code == 200:
        # At most the inbound message and the answer, logged once (a repeated sid: nothing).
        assert [m.direction for m in new] in ([Direction.INBOUND, Direction.OUTBOUND], [])
    else:
        assert response.status_code == 400 and new == []
