"""Security headers on every response: one ``after_request`` hook, one place for the rules.

A small hook rather than Flask-Talisman: the app needs a few fixed headers, one default
Content Security Policy and two page policies, and each of those is easier to read here
than as an extension's options.

* **CSP.** Every page gets ``DEFAULT_POLICY``; the payment page and the manage page get
  their own (``PAGE_POLICIES``, by blueprint name, so their 404s get it too). Scripts come
  from this site or carry the request's nonce (``csp_nonce()`` in templates and Flask-Admin's
  ``csp_nonce_generator``); no inline ``on...=`` handlers and no ``javascript:`` URLs run.
  Styles allow ``'unsafe-inline'``: Flask-Admin, select2 and our templates set ``style=``
  attributes, and a style cannot run code, so the nonce guards what matters (scripts).
* **Framing.** ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (older browsers):
  no other site may frame a page to trick a click on its buttons.
* **Sniffing and referrers.** ``nosniff`` everywhere; ``strict-origin-when-cross-origin``
  unless a page already chose stricter (``private.keep_private`` sends ``no-referrer`` for
  the pages whose URL is a key; blueprint hooks run before this app-wide one).
* **HSTS** only in production: a development server on plain http must stay reachable.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, request

from recovery.availability.calendars import google

NONCE = "{nonce}"  # replaced by ``'nonce-...'`` for each response

# Directive -> sources. ``frame-ancestors`` is in every policy.
DEFAULT_POLICY: dict[str, str] = {
    "default-src": "'self'",
    "script-src": f"'self' {NONCE}",
    "style-src": "'self' 'unsafe-inline'",
    # Bootstrap's CSS draws its form and navbar icons as data: SVGs.
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

# Stripe's documented sources for Stripe.js and its Payment Element: the script and its
# frames from js.stripe.com, 3-D Secure in frames from hooks.stripe.com, API calls to
# api.stripe.com, and its other hosts under *.stripe.com.
STRIPE_SCRIPTS = "https://js.stripe.com https://*.js.stripe.com"
PAY_POLICY: dict[str, str] = {
    **DEFAULT_POLICY,
    "script-src": f"'self' {NONCE} {STRIPE_SCRIPTS}",
    "frame-src": f"{STRIPE_SCRIPTS} https://hooks.stripe.com https://*.stripe.com",
    "connect-src": "'self' https://api.stripe.com https://*.stripe.com",
    "img-src": "'self' data: https://*.stripe.com",
}

# The manage page: our own inline styles and forms; no script, no outside assets.
MANAGE_POLICY: dict[str, str] = {
    "default-src": "'none'",
    "style-src": "'unsafe-inline'",
    "img-src": "'self'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}

PAGE_POLICIES: dict[str, dict[str, str]] = {"pay": PAY_POLICY, "manage": MANAGE_POLICY}

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
REFERRER_POLICY = "strict-origin-when-cross-origin"
HSTS = "max-age=31536000; includeSubDomains"

# The policies with this app's extra form targets, built once per app.
POLICIES_EXTENSION = "recovery.csp_policies"


def new_nonce() -> None:
    """A fresh nonce at the start of every request. Set here rather than only on first use:
    an app context that outlives one request (a CLI command, a test) keeps ``g``."""
    g.csp_nonce = secrets.token_urlsafe(18)


def csp_nonce() -> str:
    """This request's nonce: the same for every script of one page, new for every response."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(18)
    return nonce


def render_policy(directives: Mapping[str, str], nonce: str) -> str:
    source = f"'nonce-{nonce}'"
    return "; ".join(
        f"{name} {sources.replace(NONCE, source)}" for name, sources in directives.items()
    )


def _form_targets(config: Mapping) -> list[str]:
    """Origins a form may end up at besides this site. Browsers check ``form-action`` on
    a form's redirects too: "Connect Google Calendar" posts here and is redirected to
    Google's consent page."""
    settings = google.settings_from_config(config)
    if settings is None:
        return []
    parts = urlsplit(settings.auth_uri)
    return [f"{parts.scheme}://{parts.netloc}"]


def _policies(config: Mapping) -> dict[str | None, dict[str, str]]:
    extra = " ".join(_form_targets(config))
    policies: dict[str | None, dict[str, str]] = {None: DEFAULT_POLICY, **PAGE_POLICIES}
    if extra:
        policies[None] = {**DEFAULT_POLICY, "form-action": f"'self' {extra}"}
    return policies


def add_security_headers(response: Response) -> Response:
    policies = current_app.extensions[POLICIES_EXTENSION]
    policy = policies.get(request.blueprint) or policies[None]
    response.headers["Content-Security-Policy"] = render_policy(policy, csp_nonce())
    response.headers.update(HEADERS)
    response.headers.setdefault("Referrer-Policy", REFERRER_POLICY)
    if current_app.config.get("APP_ENV") == "production":
        response.headers["Strict-Transport-Security"] = HSTS
    return response


def init_security(app: Flask) -> None:
    app.extensions[POLICIES_EXTENSION] = _policies(app.config)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    # First of the app's hooks: a later one (the CSRF check, the admin's) may end the
    # request early, and its answer still needs this request's own nonce.
    app.before_request_funcs.setdefault(None, []).insert(0, new_nonce)
    app.after_request(add_security_headers)
