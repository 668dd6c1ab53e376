"""The domain's two user-facing refusals, shared by every capability.

Callers (admin actions, CLI commands, webhooks) turn them into a message for a person;
an invariant breach is not one of these, it is a bug and raises as such.
"""

from __future__ import annotations


class NotFound(LookupError):
    """No such record (or not one the caller may see)."""


class InvalidTransition(ValueError):
    """The record is in a state this transition cannot start from (message says why)."""
