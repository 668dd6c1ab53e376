"""Bounded request bodies (413 before the body is read) and access logs that name the
route of a customer link, never its token."""

from __future__ import annotations

import logging
import secrets
import shlex
import socket
import time

from recovery.config import MAX_CONTENT_LENGTH
from tests.admin_support import *  # noqa: F403 (the shared fixtures)
from tests.conftest import REDIS_URL
from tests.processes import ROOT, answers, free_port, process_env, running, wait_until


def test_an_oversized_webhook_body_is_refused_with_413(client):
    body = b"x" * (MAX_CONTENT_LENGTH + 1)
    for url in ("/webhooks/stripe", "/webhooks/twilio/sms", "/webhooks/twilio/status"):
        response = client.post(url, data=body, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 413, url
        assert response.mimetype == "text/plain"
        assert "Request body too large: at most 1024 KB." in response.get_data(as_text=True)


def test_a_far_larger_upload_is_refused_before_it_is_read(owner_client, session, shop_a):
    """The CSV import's own cap (1,000,000 bytes, its message tested with the import)
    fits inside the limit; a file twice the limit never reaches the view."""
    # Encoded in memory: the test client would spool a file this size to disk.
    huge = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n\r\n'
        + b"x" * (2 * MAX_CONTENT_LENGTH)
        + b"\r\n--b--\r\n"
    )
    response = owner_client.post(
        "/admin/customers/import/", data=huge, content_type="multipart/form-data; boundary=b"
    )
    assert response.status_code == 413


def _procfile_web(port: int) -> list[str]:
    """The Procfile's web command, bound to ``port``."""
    line = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    line = line.removeprefix("web:").replace("${PORT:-5000}", str(port))
    return shlex.split(line.replace("${WEB_CONCURRENCY:-3}", "2"))


def test_gunicorn_refuses_a_huge_body_unread_and_logs_no_link_tokens(database_url):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = process_env(database_url, REDIS_URL)
    with running(_procfile_web(port), env) as web:
        wait_until(lambda: answers(f"{base}/healthz"), 60, "gunicorn", web)

        # Says 400 MB, sends 64 KB: the answer comes at once, without the rest.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(
                b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 400000000\r\n\r\n"
                + b"{"
                * 65536
            )
            started = time.monotonic()
            answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert time.monotonic() - started < 10

        pay_token, manage_token = secrets.token_urlsafe(18), secrets.token_urlsafe(16)
        answers(f"{base}/pay/{pay_token}")
        answers(f"{base}/b/{manage_token}?x=1")
        wait_until(lambda: "/b/<token>" in web.output(), 10, "the access log line", web)
        log = web.output()
    assert "GET /pay/<token> HTTP/1.1" in log
    assert "GET /b/<token>?x=1 HTTP/1.1" in log
    assert pay_token not in log and manage_token not in log


def test_the_embedded_servers_request_log_has_no_link_tokens(app, caplog):
    import app as app_module

    record = logging.LogRecord(
        "werkzeug",
        logging.INFO,
        __file__,
        1,
        '"%s" %s %s',
        ("GET /b/abcDEF123 HTTP/1.1", 200, 5),
        None,
    )
    assert app_module._redact_link_tokens(record)
    assert record.getMessage() == '"GET /b/<token> HTTP/1.1" 200 5'
