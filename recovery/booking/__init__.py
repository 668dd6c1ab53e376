"""A booking's life after it is made: its deposit hold, the payment page, cancellation.

``holds`` applies what the payment gateway says to a booking waiting for its deposit
(confirm, fail, release at the deadline); ``checkout`` is the payment page's view of a
payment; ``cancellation`` cancels a booking, refunds by policy and opens the slot for
the recovery loop (``recovery.offers``).
"""
