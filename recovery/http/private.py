"""Pages whose URL is a key: the payment page (``/pay/<token>``) and the manage page
(``/b/<token>``). Whoever holds the link may act on the booking, so the link must not
leak: no cache keeps the page, no referrer carries the URL to another site, no search
engine indexes it, and no other site frames the page to trick a tap on its buttons.

One hook holds that rule; each blueprint of such pages registers it with
``bp.after_request(keep_private)``, so error pages of those URLs get it too.
"""

from __future__ import annotations

from flask import Response

FRAME_ANCESTORS = "frame-ancestors 'none'"

PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",  # for browsers that predate CSP's frame-ancestors
    "X-Content-Type-Options": "nosniff",
}


def keep_private(response: Response, policy: str | None = None) -> Response:
    """Add the private-page headers. ``policy`` is a page's own Content-Security-Policy
    (the pay page loads Stripe's script, the manage page nothing); either way it is
    never framed."""
    response.headers.update(PRIVATE_HEADERS)
    directives = [d for d in (policy, FRAME_ANCESTORS) if d]
    response.headers["Content-Security-Policy"] = "; ".join(directives)
    return response
