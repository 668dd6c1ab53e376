"""The domain: models, rules, state transitions and provider gateways.

Modules here take a session and ids, change state, flush, and return what happened; the
caller owns the commit. Only ``recovery.http`` (the webhook and health blueprints) sees
Flask requests, and nothing here imports ``admin`` or ``jobs``.
"""
