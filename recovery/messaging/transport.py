"""The HTTP transport under the Twilio SDK: urllib3's connection pool, called directly.

The SDK builds each request (URL, form, auth, headers) and reads each answer; this class
only carries it, and (unlike the SDK's own transport) logs nothing per request. The SDK's
own transport goes through requests, whose machinery around every call (a ``Request``
object, preparing it, merging the environment's proxy and CA settings, hooks, cookies, an
adapter) was half the CPU of a send on the 2-core machine: 0.63 ms a send through
requests, 0.33 ms through the pool (BENCHMARKS.md, "Wave 5"), paid thousands of times
when a worker catches up after an outage.

What changes for whoever deploys: the sender ignores ``HTTPS_PROXY`` and
``REQUESTS_CA_BUNDLE``; it verifies Twilio's certificate against certifi's bundle, as the
SDK did. Errors are urllib3's (``urllib3.exceptions.HTTPError``): ``never_connected``
tells the ones where the request never left.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import certifi
import urllib3
from twilio.http import HttpClient
from twilio.http.response import Response
from urllib3.exceptions import ConnectTimeoutError, HTTPError, MaxRetryError

JSON_TYPES = ("application/json", "application/scim+json")


class PooledHttpClient(HttpClient):
    def __init__(self, timeout: float, connections: int) -> None:
        super().__init__(logging.getLogger("twilio.http_client"), is_async=False, timeout=timeout)
        # One kept-alive connection per concurrent send (``SEND_CONCURRENCY``). No retries,
        # as with requests: whether a failed request may be sent again is the sender's
        # decision (it looks the message up first when the request may have arrived).
        self.pool = urllib3.PoolManager(
            maxsize=connections,
            retries=urllib3.Retry(0, read=False, redirect=False),
            ca_certs=certifi.where(),
        )

    def request(
        self,
        method: str,
        url: str,
        params: dict | None = None,
        data: dict | None = None,
        headers: dict | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        params = {k: v for k, v in (params or {}).items() if v is not None}  # as requests
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        body = None
        if data is not None and headers.get("Content-Type") in JSON_TYPES:
            body = json.dumps(data)
        elif data:
            body = urlencode(data, doseq=True)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        answer = self.pool.request(
            method.upper(),
            url,
            body=body,
            headers=headers,
            redirect=allow_redirects,
            timeout=timeout or self.timeout,
        )
        return Response(answer.status, answer.data.decode("utf-8"), answer.headers)

    def close(self) -> None:
        self.pool.clear()


def never_connected(exc: BaseException) -> bool:
    """True when no connection to the provider was made, so the request never left: a
    refused or timed-out connect (urllib3 reports it as the reason of a spent retry)."""
    return isinstance(exc, MaxRetryError) and isinstance(exc.reason, ConnectTimeoutError)


TRANSPORT_ERRORS = (HTTPError, OSError)  # what a call may raise besides the SDK's own
