"""How far apart bvlc_alexnet's three input pipelines (caffe_cpp, pycaffe, pil) are on one photo: a Markdown report.

For one image it prints, as Markdown tables (docs/preprocessing.md shows a run on the king penguin):

- the JPEG decode: cv2.imdecode (what Caffe's cv::imread does) against PIL's decode (what ifmsan.steps.images does);
- per preprocessing mode, the (3, 227, 227) mean-subtracted BGR tensor; max and mean |Δ| between every pair of modes,
  between caffe_cpp on the PIL decode and caffe_cpp on the OpenCV decode (the whole C++ Caffe pipeline), between
  pycaffe and OpenCV's warp at pycaffe's geometry (whole image to 227, channel means: the filter alone), and between
  the mean image's crop and its channel means;
- per mode, p(target), ln p(target) and the top-1 class of bvlc_alexnet with seeded random weights (softmax of the
  logits), and Δp, Δ ln p between modes.

Run `.venv/bin/python benchmarks/preprocess_fidelity.py [--image PATH] [--mean-file PATH|none] [--no-net]`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
# where the paper run downloads the king penguin and Caffe's mean file
DEFAULT_IMAGE = DATA / "images" / "king_penguin.JPEG"
DEFAULT_MEAN = DATA / "ilsvrc_2012_mean.npy"
KING_PENGUIN = 145


def decode_difference(path: Path, image: Image.Image) -> tuple[Image.Image, dict[str, float]]:
    """The OpenCV decode of the file as an RGB PIL image, and how its pixels differ from PIL's decode."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(path.read_bytes(), dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cv2.imdecode cannot read {path}")
    pil = np.asarray(image.convert("RGB"), dtype=np.int16)
    cv_rgb = bgr[:, :, ::-1]
    if cv_rgb.shape != pil.shape:
        raise SystemExit(f"{path}: OpenCV decodes {cv_rgb.shape}, PIL {pil.shape} (EXIF rotation?)")
    delta = np.abs(cv_rgb.astype(np.int16) - pil)
    stats = {"max": float(delta.max()), "mean": float(delta.mean()), "differing": float((delta > 0).mean())}
    return Image.fromarray(np.ascontiguousarray(cv_rgb), "RGB"), stats


def pair_rows(values: dict[str, torch.Tensor]) -> list[str]:
    """Markdown rows 'a vs b | max |Δ| | mean |Δ|' for every pair of tensors."""
    rows = []
    for a, b in itertools.combinations(values, 2):
        delta = (values[a].double() - values[b].double()).abs()
        rows.append(f"| {a} vs {b} | {float(delta.max()):.4f} | {float(delta.mean()):.4f} |")
    return rows


def net_outputs(mode: str, image: Image.Image, *, mean_file: Path | None, seed: int) -> torch.Tensor:
    """bvlc_alexnet's (seeded random weights) float64 log-softmax on the image preprocessed by `mode`."""
    from ifmsan.models.caffe_alexnet import build_bvlc_alexnet

    net = build_bvlc_alexnet(weights=None, seed=seed, mean_file=mean_file, preprocess=mode)
    assert net.weights_info["preprocess"] == mode
    with torch.inference_mode():
        logits = net(net.preprocess(image)[None])
    return torch.log_softmax(logits[0].double(), dim=0)


def main(argv: list[str] | None = None) -> int:
    """Print the report for one image."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="a JPEG (default: the king penguin)")
    parser.add_argument("--mean-file", default=str(DEFAULT_MEAN), help="ilsvrc_2012_mean.npy, or 'none'")
    parser.add_argument("--target", type=int, default=KING_PENGUIN, help="class index (default 145, king penguin)")
    parser.add_argument("--seed", type=int, default=0, help="seed of bvlc_alexnet's random weights")
    parser.add_argument("--no-net", action="store_true", help="pixels only: skip the three bvlc_alexnet runs")
    args = parser.parse_args(argv)

    import cv2

    from ifmsan.models.preprocess import (
        CAFFE_PREPROCESSING,
        caffe_channel_mean,
        caffe_mean_crop,
        caffe_preprocessor,
        load_mean_file,
    )
    from ifmsan.steps.images import load_image

    mean_file = None if args.mean_file.lower() == "none" else Path(args.mean_file)
    mean = None if mean_file is None else load_mean_file(mean_file)
    image = load_image(str(args.image))
    cv_image, decode = decode_difference(args.image, image)
    size = f"{image.width}x{image.height}"
    print(f"image `{args.image.name}` ({size}), mean file `{mean_file}`, opencv {cv2.__version__}\n")
    print("| decode | max \\|Δpixel\\| | mean \\|Δpixel\\| | pixels differing |")
    print("|---|---|---|---|")
    max_, mean_, share = decode["max"], decode["mean"], decode["differing"]
    print(f"| cv2.imdecode vs PIL (uint8 RGB) | {max_:.0f} | {mean_:.4f} | {share:.2%} |")

    tensors = {mode: caffe_preprocessor(mode, mean=mean)(image) for mode in CAFFE_PREPROCESSING}
    cpp_cv_decode = caffe_preprocessor("caffe_cpp", mean=mean)(cv_image)
    print("\n| tensors (3x227x227, mean subtracted) | max \\|Δ\\| | mean \\|Δ\\| |")
    print("|---|---|---|")
    for row in pair_rows(tensors):
        print(row)
    print(*pair_rows({"caffe_cpp (PIL decode)": tensors["caffe_cpp"], "caffe_cpp (cv2 decode)": cpp_cv_decode}))
    # What makes pycaffe differ: its geometry (whole image to 227, no crop) and its mean, apart from the filter.
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    whole = cv2.resize(bgr, (227, 227), interpolation=cv2.INTER_LINEAR).astype(np.float64).transpose(2, 0, 1)
    same_geometry = torch.from_numpy(whole - caffe_channel_mean(mean)[:, None, None])
    geometry = {"pycaffe": tensors["pycaffe"], "OpenCV warp of the whole image to 227, channel means": same_geometry}
    print(*pair_rows(geometry))
    gap = np.abs(caffe_mean_crop(mean) - caffe_channel_mean(mean)[:, None, None])
    print(f"| mean image crop vs its channel means (no image) | {gap.max():.4f} | {gap.mean():.4f} |\n")

    if not args.no_net:
        logp = {mode: net_outputs(mode, image, mean_file=mean_file, seed=args.seed) for mode in CAFFE_PREPROCESSING}
        t = args.target
        print(f"bvlc_alexnet, seeded random weights (seed {args.seed}), softmax of the logits; target class {t}:\n")
        print(f"| mode | p({t}) | ln p({t}) | top-1 class | p(top-1) |")
        print("|---|---|---|---|---|")
        for mode, values in logp.items():
            top = int(values.argmax())
            p_t, p_top = float(values[t].exp()), float(values[top].exp())
            print(f"| {mode} | {p_t:.4g} | {float(values[t]):.2f} | {top} | {p_top:.6f} |")
        print(f"\n| pair | Δp({t}) | Δ ln p({t}) | max \\|Δ ln p\\| over the 1000 classes |")
        print("|---|---|---|---|")
        for a, b in itertools.combinations(logp, 2):
            dp = float(logp[a][t].exp() - logp[b][t].exp())
            dlog, dmax = float(logp[a][t] - logp[b][t]), float((logp[a] - logp[b]).abs().max())
            print(f"| {a} − {b} | {dp:+.3g} | {dlog:+.2f} | {dmax:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
