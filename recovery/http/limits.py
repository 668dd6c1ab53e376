"""Bounded request bodies: ``MAX_CONTENT_LENGTH`` (1 MiB, ``recovery/config.py``).

A declared ``Content-Length`` over the limit is refused with 413 before any other hook or
view runs (a webhook that fails its signature check first would otherwise answer 400 and
leave the body unread only by luck); a chunked body is cut off by Werkzeug at the limit
when read. So a large post never grows a web process. Webhooks and forms are small; the
largest body the app takes is the customers' CSV import, whose file is capped at
1,000,000 bytes (``admin/customers.py``) and fits with its form around it, so no route
needs a larger limit.
"""

from __future__ import annotations

from flask import Flask, Response, abort, current_app, request


def _too_large(_error) -> Response:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return Response(
        f"Request body too large: at most {limit // 1024} KB.\n",
        status=413,
        mimetype="text/plain",
    )


def _refuse_declared_oversize() -> None:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and (request.content_length or 0) > limit:
        abort(413)


def init_limits(app: Flask) -> None:
    # First of all before_request hooks: CSRF protection would read the form.
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_declared_oversize)
    app.register_error_handler(413, _too_large)
