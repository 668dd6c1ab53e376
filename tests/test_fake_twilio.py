"""The real twilio SDK against tests/fake_twilio.py (no database, loopback only)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tests.fake_twilio import FakeTwilio, count_segments, twilio_client

FROM = "+15005550006"
TO = "+447700900123"


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def client(fake: FakeTwilio) -> Iterator[Client]:
    client = twilio_client(fake)
    yield client
    client.http_client.session.close()  # type: ignore[attr-defined]  # TwilioHttpClient


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),  # GSM-7: one full segment
        ("a" * 161, 2),  # GSM-7 concatenated: 153 + 8
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # extension characters take two septets: 160
        ("a" * 152 + "€" + "a" * 152, 3),  # an escape pair is not split: 152 | 2+151 | 1
        ("é" * 160, 1),  # é is in the GSM-7 alphabet
        ("ć" * 70, 1),  # ć is not: UCS-2, one segment of 70
        ("ć" * 71, 2),  # UCS-2 concatenated: 67 + 4
        ("😀" * 35, 1),  # a surrogate pair takes two UTF-16 code units
    ],
)
def test_count_segments(body: str, segments: int) -> None:
    assert count_segments(body) == segments


@pytest.mark.parametrize(("body", "segments"), [("x" * 160, 1), ("x" * 161, 2), ("Zoë 🙂", 1)])
def test_send_is_recorded(fake: FakeTwilio, client: Client, body: str, segments: int) -> None:
    message = client.messages.create(
        to=TO, from_=FROM, body=body, status_callback="http://localhost/twilio/status"
    )

    assert message.sid is not None and len(message.sid) == 34 and message.sid.startswith("SM")
    assert message.status == "queued"
    assert message.num_segments == str(segments)
    assert message.to == TO and message.from_ == FROM and message.body == body
    assert message.account_sid == fake.account_sid
    assert message.date_created is not None
    assert message.uri == f"/2010-04-01/Accounts/{fake.account_sid}/Messages/{message.sid}.json"
    assert fake.messages == [
        {
            "sid": message.sid,
            "to": TO,
            "from_": FROM,
            "body": body,
            "status_callback": "http://localhost/twilio/status",
            "messaging_service_sid": None,
            "num_segments": segments,
        }
    ]


def test_versioned_path_and_messaging_service(fake: FakeTwilio, client: Client) -> None:
    message = client.api.v2010.account.messages.create(
        to=TO, messaging_service_sid="MG00000000000000000000000000000000", body="hi"
    )

    assert message.from_ is None
    [sent] = fake.messages
    assert sent["sid"] == message.sid
    assert sent["messaging_service_sid"] == "MG00000000000000000000000000000000"
    assert sent["status_callback"] is None


def test_wrong_auth_token_is_401(fake: FakeTwilio) -> None:
    # Built by hand, the way the app points a Client at TWILIO_API_BASE_URL.
    client = Client(fake.account_sid, "wrong-token")
    client.edge = client.region = None
    client.api.base_url = fake.base_url
    try:
        with pytest.raises(TwilioRestException) as info:
            client.messages.create(to=TO, from_=FROM, body="hi")
    finally:
        client.http_client.session.close()  # type: ignore[attr-defined]

    assert info.value.status == 401
    assert info.value.code == 20003
    assert fake.messages == []


def test_fail_next_then_success(fake: FakeTwilio, client: Client) -> None:
    fake.fail_next(2, 500)

    for _ in range(2):
        with pytest.raises(TwilioRestException) as info:
            client.messages.create(to=TO, from_=FROM, body="hi")
        assert info.value.status == 500
        assert info.value.code == 20500
    message = client.messages.create(to=TO, from_=FROM, body="hi")

    assert [m["sid"] for m in fake.messages] == [message.sid]
    assert fake.create_attempts == 3


def test_invalid_to_is_21211(fake: FakeTwilio, client: Client) -> None:
    with pytest.raises(TwilioRestException) as info:
        client.messages.create(to="07700900123", from_=FROM, body="hi")

    assert info.value.status == 400
    assert info.value.code == 21211
    assert fake.messages == []


def test_unknown_path_is_404(fake: FakeTwilio, client: Client) -> None:
    with pytest.raises(TwilioRestException) as info:
        client.api.v2010.account.calls.create(to=TO, from_=FROM, url="http://localhost/x")

    assert info.value.status == 404
    assert info.value.code == 20404


def test_wait_for_and_reset(fake: FakeTwilio, client: Client) -> None:
    sender = threading.Thread(
        target=lambda: client.messages.create(to=TO, from_=FROM, body="later")
    )
    sender.start()
    try:
        assert [m["body"] for m in fake.wait_for(1, timeout=5)] == ["later"]
    finally:
        sender.join()

    fake.reset()
    assert fake.messages == []
    with pytest.raises(TimeoutError):
        fake.wait_for(1, timeout=0.05)


def test_list_filters_by_to_and_from_newest_first(fake: FakeTwilio, client: Client) -> None:
    other = "+447700900999"
    sids = [
        client.messages.create(to=to, from_=FROM, body=f"n{i}").sid
        for i, to in enumerate([TO, other, TO])
    ]
    client.messages.create(to=TO, from_="+15005550001", body="another sender")

    listed = client.messages.list(to=TO, from_=FROM)

    assert [m.sid for m in listed] == [sids[2], sids[0]]
    assert [m.body for m in listed] == ["n2", "n0"]
    assert all(m.direction == "outbound-api" and m.date_created is not None for m in listed)
    assert fake.lookups == 1


def test_list_pages_through_the_sdk(fake: FakeTwilio, client: Client) -> None:
    for i in range(5):
        client.messages.create(to=TO, from_=FROM, body=f"n{i}")
    streamed = list(client.messages.stream(to=TO, page_size=2))
    assert [m.body for m in streamed] == ["n4", "n3", "n2", "n1", "n0"]
    assert fake.lookups == 3  # three pages of two
    assert [m.body for m in client.messages.list(to=TO, limit=3)] == ["n4", "n3", "n2"]


def test_date_sent_filter_and_fetch(fake: FakeTwilio, client: Client) -> None:
    message = client.messages.create(to=TO, from_=FROM, body="hi")
    today = message.date_created
    assert [m.sid for m in client.messages.list(date_sent_after=today)] == [message.sid]
    assert client.messages.list(date_sent_before=today - timedelta(days=1)) == []
    fetched = client.messages(message.sid).fetch()
    assert (fetched.sid, fetched.status, fetched.body) == (message.sid, "sent", "hi")


def test_answer_late_accepts_then_times_the_client_out(fake: FakeTwilio) -> None:
    impatient = twilio_client(fake, timeout=0.2)
    fake.answer_late(2.0)
    try:
        with pytest.raises(requests.exceptions.ReadTimeout):
            impatient.messages.create(to=TO, from_=FROM, body="late")
        assert [m["body"] for m in fake.messages] == ["late"]  # accepted all the same
        # Only that one is late: the next is answered at once.
        assert impatient.messages.create(to=TO, from_=FROM, body="on time").sid
    finally:
        impatient.http_client.session.close()  # type: ignore[attr-defined]


def test_hang_up_after_accept(fake: FakeTwilio, client: Client) -> None:
    fake.hang_up_after_accept()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.messages.create(to=TO, from_=FROM, body="cut off")
    assert [m["body"] for m in fake.messages] == ["cut off"]
