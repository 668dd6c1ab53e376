"""Pages whose URL is a key: the payment page (``/pay/<token>``) and the manage page
(``/b/<token>``). Whoever holds the link may act on the booking, so the link must not
leak: no cache keeps the page, no referrer carries the URL to another site, and no search
engine indexes it.

One hook holds that rule; each blueprint of such pages registers it with
``bp.after_request(keep_private)``, so error pages of those URLs get it too. Their Content
Security Policy, framing and sniffing headers come from ``recovery.http.security`` with
every other response's (blueprint hooks run first, so ``no-referrer`` here wins over the
app-wide referrer policy).
"""

from __future__ import annotations

from flask import Response

PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


def keep_private(response: Response) -> Response:
    response.headers.update(PRIVATE_HEADERS)
    return response
