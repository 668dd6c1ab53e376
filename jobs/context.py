"""The Flask app a job runs in.

Under RQ a job runs in a worker process that has no app: it builds one from the
environment, once per process. In the embedded mode and in tests the job runs where an
app already exists and uses that one.
"""

from __future__ import annotations

from flask import Flask, current_app, has_app_context

_worker_app: Flask | None = None


def job_app() -> Flask:
    global _worker_app
    if has_app_context():
        return current_app._get_current_object()
    if _worker_app is None:
        from app import create_app  # the app module imports jobs, so import late

        _worker_app = create_app()
    return _worker_app
