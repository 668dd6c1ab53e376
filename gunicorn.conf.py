"""gunicorn settings read by the Procfile's ``web`` process (``-c gunicorn.conf.py``).

The access log names the route of a customer link, never its token: ``/pay/<token>`` and
``/b/<token>`` are keys to a payment and a booking, and logs travel to drains and people.
"""

from gunicorn.glogging import Logger

from recovery.links import redact_tokens
from recovery.memory import freeze_startup_objects


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        # r: the request line; U: the path; f: the referrer (our pages send none, but a
        # customer's browser might carry one from elsewhere).
        for key in ("r", "U", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_tokens(atoms[key])
        return atoms


logger_class = RedactingLogger


def post_worker_init(worker):
    # The app is loaded in this worker: what it holds for life leaves the collector's walk.
    freeze_startup_objects()
