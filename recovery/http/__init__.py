"""HTTP entry points owned by the domain: webhooks, health, the payment page.

The only part of ``recovery`` that reads Flask requests: each view verifies, parses the
request into plain values and calls one domain function.
"""
