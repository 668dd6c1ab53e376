"""Money: the deposit rule, payment gateways (Stripe, sandbox), payment requests, refunds,
and verified gateway events. Knows nothing of the offer loop: what a payment outcome does
to a booking lives in ``recovery.booking.holds``."""
