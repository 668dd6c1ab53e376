"""The HTTP transport under the Twilio SDK (``recovery.messaging.transport``), against the
fake Twilio API: it carries the SDK's requests as requests did."""

import json

from recovery.messaging.gateway import TwilioSender
from recovery.messaging.transport import PooledHttpClient

PHONE = "+447700900123"


def test_a_query_keeps_the_urls_own_and_drops_unset_parameters(fake_twilio):
    sender = TwilioSender(fake_twilio.account_sid, fake_twilio.auth_token, fake_twilio.base_url)
    try:
        sender.send(PHONE, "+447700900000", "first")
        sender.send("+447700900124", "+447700900000", "other")
    finally:
        sender.close()
    http = PooledHttpClient(timeout=5, connections=1)
    try:
        url = f"{fake_twilio.base_url}/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
        answer = http.request(
            "GET",
            url + "?PageSize=5",  # a next page's URL arrives with its query
            params={"To": PHONE, "From": None},  # the SDK leaves an unset filter as None
            auth=(fake_twilio.account_sid, fake_twilio.auth_token),
        )
    finally:
        http.close()
    assert answer.status_code == 200
    found = json.loads(answer.text)["messages"]
    # "From=None" would have matched nothing; a second "?" would have lost the To filter.
    assert [m["body"] for m in found] == ["first"]


def test_a_wrong_token_is_refused_by_the_provider(fake_twilio):
    sender = TwilioSender(fake_twilio.account_sid, "not-the-token", fake_twilio.base_url)
    try:
        answer = sender.http.request(
            "POST",
            f"{fake_twilio.base_url}/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json",
            data={"To": PHONE, "From": "+447700900000", "Body": "hi"},
            auth=(fake_twilio.account_sid, "not-the-token"),
        )
    finally:
        sender.close()
    assert answer.status_code == 401
    assert fake_twilio.messages == []
