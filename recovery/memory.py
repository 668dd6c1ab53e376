"""Keeping the garbage collector off what a serving process holds for its whole life.

A web or worker process imports Flask, SQLAlchemy and the SDKs and builds the app: about
200,000 objects that live as long as the process. Python's full collection walks every one
of them, and on the 2-core machine each took about 100 ms, in the middle of whatever page
or job made enough objects to call for one (BENCHMARKS.md, "Wave 5"). Freezing them once the
process is ready takes them out of the collector's walk; cycles made afterwards are still
collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Call in the serving process when the app is built and before work arrives. Called
    again (the benchmark process builds a second app), what an earlier call froze is
    thawed first, so the earlier app's garbage is collected rather than kept for ever."""
    gc.unfreeze()
    gc.collect()  # what startup left as garbage goes now, not frozen for ever
    gc.freeze()
