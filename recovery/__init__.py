"""The domain, split by capability. Lower layers never import higher ones:

1. core: ``config``, ``db``, ``effects``, ``errors``, then ``models``, ``redis_client``
2. ``availability`` (is a resource free) and ``payments`` (deposits, gateways, refunds)
3. ``messaging`` (numbers, texts, SMS senders, the outbox)
4. ``offers`` (the recovery loop on openings and offers, inbound replies)
5. ``booking`` (deposit holds, the payment page's state, cancellation)
6. ``sweep``, ``cli``, ``http`` (blueprints) and ``demo``

Modules take a session and ids, change state, flush, and return what happened; the
caller owns the commit. Only ``recovery.http`` sees Flask requests, and nothing here
imports ``admin`` or ``jobs`` (``tests/test_imports.py`` checks all of this).
"""
