"""Helpers shared by the tests (reference models, weight mappings)."""
