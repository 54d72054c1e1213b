"""Adversaries that know the sanitizer: an adaptive server, an image decoder, an attribute probe and a white-box
optimization attack (docs/attacks.md)."""

from ifmsan.attacks.options import METRICS, OPTIMIZE_METRICS, AttackOptions
from ifmsan.attacks.run import IDENTITY, UNSANITIZED, knob_sanitizer, run_attacks

__all__ = ["IDENTITY", "METRICS", "OPTIMIZE_METRICS", "UNSANITIZED", "AttackOptions", "knob_sanitizer", "run_attacks"]
