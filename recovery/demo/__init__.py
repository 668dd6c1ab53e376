"""The embedded demo: a seeded shop with a history made by the real loop, and ``flask demo``."""
