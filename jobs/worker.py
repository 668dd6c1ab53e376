"""The job runner: an RQ worker that builds the Flask app once per process.

``rq worker --worker-class jobs.worker.AppWorker`` (the Procfile's worker). This module is
an entry point, like ``app:create_app()`` for gunicorn: it is the one place in ``jobs``
that imports ``app``, and nothing imports it. Each job runs inside the app's context, so
its session is removed (and any transaction it left open rolled back) when it ends.
"""

from __future__ import annotations

import logging

from rq.worker import SimpleWorker

from app import create_app
from recovery.memory import freeze_startup_objects


class AppWorker(SimpleWorker):
    """Runs jobs in this process (no fork per job: connections stay pooled)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = create_app()
        # ``rq worker`` gave its logger handlers of its own before the app set up logging;
        # the app's root handler prints those lines too, so each came out twice.
        rq_log = logging.getLogger("rq.worker")
        for handler in list(rq_log.handlers):
            rq_log.removeHandler(handler)
        freeze_startup_objects()

    def perform_job(self, job, queue) -> bool:
        with self.app.app_context():
            return super().perform_job(job, queue)
