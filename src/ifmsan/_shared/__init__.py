"""Helpers shared across the package: atomic writes, hashing, thread pools, value parsing, reproducible torch."""
