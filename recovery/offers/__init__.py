"""The recovery loop on openings and offers (see docs/architecture.md, "The loop").

``openings`` opens, reopens and expires a slot opening; ``offering`` offers it to one
customer at a time and moves on when an offer expires or is declined; ``accepting`` lets
the first YES win; ``inbound`` reads a customer's text and calls one of them. Every
transition locks the opening first (``locks``), flushes, and never commits.
"""
