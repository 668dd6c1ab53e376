"""Is a resource free then: the overlap rule in code (busy blocks and calendars join it)."""
