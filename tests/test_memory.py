"""Startup objects frozen out of the collector's walk, and a second freeze (the benchmark
process builds a second app) that lets the first app's garbage go."""

import gc
import weakref

from recovery.memory import freeze_startup_objects


class Node:
    pass


def test_a_second_freeze_collects_what_the_first_kept():
    node = Node()
    node.self = node  # a reference cycle: only the collector can free it
    alive = weakref.ref(node)
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: a collection leaves it alone

        freeze_startup_objects()
        assert alive() is None  # thawed and collected by the second call
    finally:
        gc.unfreeze()  # the rest of the test run as before
