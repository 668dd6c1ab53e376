"""Benchmarks of the recovery loop on real processes (see BENCHMARKS.md).

Run them all with ``make bench`` (``.venv/bin/python -m bench``); ``--quick`` is a smoke run.
"""
