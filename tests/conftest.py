"""Shared pytest configuration. Fixtures live in test modules or in `tests/*_fixtures.py`."""
