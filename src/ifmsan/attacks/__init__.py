"""Adversaries that know the sanitizer: an adaptive server, an image decoder and an attribute probe (docs/attacks.md)."""

from ifmsan.attacks.run import IDENTITY, METRICS, UNSANITIZED, AttackOptions, knob_sanitizer, run_attacks

__all__ = ["IDENTITY", "METRICS", "UNSANITIZED", "AttackOptions", "knob_sanitizer", "run_attacks"]
