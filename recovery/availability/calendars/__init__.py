"""Calendar sync: a resource's Google Calendar or iCal feed mirrored into busy blocks.

``secrets`` (encryption at rest), ``google`` (OAuth2 and events.list), ``ics`` (feed fetch
and parse), ``sync`` (busy rules, upsert, errors), ``cli`` (``flask calendar``). Opening
withdrawal belongs to the offers layer: the job in ``jobs.tasks`` calls it with the block
ids a sync returns.
"""
