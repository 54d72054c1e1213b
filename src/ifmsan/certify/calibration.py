"""A layer's calibration std: the fixed reference that a certified noise σ is scaled from, never the query's own IFM.

The std of every IFM value of the layer pooled over images 0..n-1 of minidata's `calibration` split, a split that is
neither the adversaries' train nor their held-out images nor a run's images. Computed once per (model, layer) before
any query and recorded with its provenance, so σ = scale x std is the same number for every image that is released.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ifmsan.models.base import LayeredNet

CALIBRATION_SPLIT = "calibration"


def calibration_std(
    net: LayeredNet,
    *,
    layer: str,
    n_images: int = 64,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool | None = None,
) -> dict[str, Any]:
    """The layer's population std over the calibration images (float64), with what it was computed from."""
    from ifmsan.attacks.data import attack_images
    from ifmsan.attacks.run import layer_ifms
    from ifmsan.steps.sweep import check_layer

    check_layer(net, layer)
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 2:
        raise ValueError(f"calibration n_images must be an integer >= 2, got {n_images!r}")
    images = attack_images(split=CALIBRATION_SPLIT, n=int(n_images), seed=seed, progress=progress)
    ifms = layer_ifms(net, images.images, layer=layer, batch_size=batch_size).to(torch.float64)
    std = float(ifms.std(correction=0))
    if not np.isfinite(std) or std <= 0:
        raise ValueError(
            f"layer {layer}: its calibration IFMs are constant (std {std}); no noise scale can be set from them"
        )
    return {
        "layer": layer,
        "calibration_std": std,
        "calibration_mean": float(ifms.mean()),
        "n_images": int(n_images),
        "seed": int(seed),
        "split": f"ifmsan.minidata {CALIBRATION_SPLIT} split, samples 0..{int(n_images) - 1}",
        "samples_per_image": int(ifms[0].numel()),
    }
