"""Certified sanitization: a Fisher-information bound on what any unbiased attacker recovers from a randomized release."""
