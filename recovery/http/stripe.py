"""``POST /webhooks/stripe``: verified, recorded once, answered at once.

The payload is checked against ``Stripe-Signature`` with the endpoint's signing secret
(HMAC-SHA256 over the timestamp and body, compared in constant time by the SDK, with a
five-minute tolerance against replays). Anything else gets 400 and changes nothing.
"""

from __future__ import annotations

import logging

import stripe
from flask import Blueprint, current_app, jsonify, request

from recovery.db import db, utcnow
from recovery.payments.events import record_stripe_event

log = logging.getLogger(__name__)
bp = Blueprint("stripe_webhooks", __name__, url_prefix="/webhooks")


@bp.post("/stripe")
def stripe_event():
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    signature = request.headers.get("Stripe-Signature", "")
    if not secret or not signature:
        log.warning("stripe webhook refused: %s", "no secret" if not secret else "no signature")
        return jsonify(error="missing or unverifiable Stripe-Signature"), 400
    payload = request.get_data()  # the exact bytes Stripe signed
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        log.warning("stripe webhook refused: %s", exc)
        return jsonify(error="invalid payload or signature"), 400
    data = event.to_dict()
    outcome = record_stripe_event(db.session, data, utcnow())
    db.session.commit()
    log.info("stripe event %s (%s): %s", data.get("id"), data.get("type"), outcome)
    return jsonify(received=True, outcome=outcome)
