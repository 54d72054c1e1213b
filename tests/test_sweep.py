"""IFM extraction, the sweep engine and chains against one-at-a-time forwards written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ifmsan
import ifmsan.steps.sweep as sweep_module
from ifmsan import models
from ifmsan.steps.extract import extract_ifms, ifms_of
from ifmsan.steps.io import read_netcdf, write_netcdf
from ifmsan.steps.sweep import ChainStep, apply_chain, even_chunks, head_layer, parse_chain, sweep_dataset, sweep_ifm


@pytest.fixture(scope="module")
def net() -> models.LayeredNet:
    return models.load("alexnet_mini", seed=3)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(240, 260, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def extracted(net: models.LayeredNet, image: Image.Image):
    return extract_ifms(net, net.preprocess(image), attrs={"image_id": "noise", "image_sha256": "0" * 64})


def one_at_a_time(
    net: models.LayeredNet, ifm: torch.Tensor, layer: str, windows: list[int], target: int, select: str = "nonzero_mean"
) -> np.ndarray:
    """The naive sweep: one sanitization and one forward per window."""
    with torch.inference_mode():
        return np.array(
            [
                float(
                    torch.softmax(
                        net.forward_from(layer, ifmsan.sample_and_hold(ifm, n, select=select)[None]).double(), 1
                    )[0, target]
                )
                for n in windows
            ]
        )


def test_extract_round_trips_bit_for_bit(net: models.LayeredNet, image: Image.Image, extracted, tmp_path: Path) -> None:
    write_netcdf(extracted, tmp_path / "ifms.nc")
    back = ifms_of(read_netcdf(tmp_path / "ifms.nc"))
    with torch.inference_mode():
        direct = net.ifms(net.preprocess(image)[None])
    assert list(back) == list(net.ifm_layers)
    for layer, ifm in back.items():
        assert ifm.dtype == torch.float32 and torch.equal(ifm, direct[layer][0])
    dataset = read_netcdf(tmp_path / "ifms.nc")
    assert dataset["pool5"].dims == ("pool5_channel", "pool5_height", "pool5_width")
    assert dataset["fc6"].dims == ("fc6_feature",)
    assert dataset["pool5"].encoding.get("zlib") is True
    assert float(dataset["softmax"].sum()) == pytest.approx(1.0)
    top1 = int(np.argmax(dataset["softmax"].values))
    assert dataset.attrs["original_top1"] == top1 == dataset.attrs["target"] == int(dataset["top5"][0])
    assert dataset.attrs["p0"] == pytest.approx(float(dataset["softmax"].max()))
    for layer in ("norm1", "fc7"):
        values = direct[layer][0]
        assert float(dataset["zero_ratio"].sel(layer=layer)) == pytest.approx(float((values == 0).float().mean()))
    for key in ("model", "weights_sha", "image_id", "image_sha256", "ifmsan_version", "stand_in"):
        assert key in dataset.attrs
    assert dataset.attrs["stand_in"] == 1 and dataset.attrs["trained"] == 0


def test_extract_ground_truth_target_and_bad_target(net: models.LayeredNet, image: Image.Image) -> None:
    dataset = extract_ifms(net, net.preprocess(image), target=2)
    assert dataset.attrs["target"] == 2 and dataset.attrs["target_source"] == "ground_truth"
    assert dataset.attrs["p0"] == pytest.approx(float(dataset["softmax"][2]))
    with pytest.raises(ValueError, match="target must be a class index"):
        extract_ifms(net, net.preprocess(image), target=len(net.class_names))


@pytest.mark.parametrize(
    ("layer", "select"), [("pool5", "nonzero_mean"), ("norm2", "first"), ("fc7", "mean"), ("conv1", "random")]
)
def test_sweep_equals_one_forward_per_window(net: models.LayeredNet, extracted, layer: str, select: str) -> None:
    ifm = ifms_of(extracted)[layer]
    windows = [2, 3, 4, 7, 10, 31, 64]
    target = int(extracted.attrs["target"])
    got = sweep_ifm(net, ifm, layer=layer, knob=select, values=windows, target=target, batch_size=3)
    np.testing.assert_allclose(
        got["probability"], one_at_a_time(net, ifm, layer, windows, target, select), rtol=1e-5, atol=1e-7
    )
    # batching is only a memory knob: any batch size gives the same curve up to float rounding
    other = sweep_ifm(net, ifm, layer=layer, knob=select, values=windows, target=target, batch_size=64)
    np.testing.assert_allclose(got["probability"], other["probability"], rtol=1e-5, atol=1e-7)
    assert np.all(got["top1_probability"] >= got["probability"] - 1e-12)


def test_head_layer_is_the_first_small_ifm() -> None:
    bvlc = models.load("bvlc_alexnet")
    # BVLC: pool5's IFM has 43 264 values, fc6's 9 216 (paper Table 1); the head starts at the first small one
    assert [head_layer(bvlc, layer) for layer in ("conv1", "conv5", "pool5", "fc6", "fc8")] == [
        "fc6",
        "fc6",
        "fc6",
        "fc6",
        "fc8",
    ]
    mini = models.load("alexnet_mini")
    assert head_layer(mini, "conv1") == "conv3"  # conv2: 24 x 27 x 27 = 17 496 > 16 384; conv3: 64 x 13 x 13 = 10 816


@pytest.mark.parametrize(
    ("count", "batch_size"), [(149, 32), (7, 3), (5, 5), (1, 32), (64, 32), (300, 7), (2, 1), (10, 4)]
)
def test_even_chunks_cover_every_value_once_in_balanced_batches(count: int, batch_size: int) -> None:
    chunks = even_chunks(count, batch_size)
    covered = [i for first, stop in chunks for i in range(first, stop)]
    assert covered == list(range(count))
    sizes = [stop - first for first, stop in chunks]
    assert len(chunks) == -(-count // batch_size) and max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    assert even_chunks(149, 32) == [(0, 30), (30, 60), (60, 90), (90, 120), (120, 149)]
    assert even_chunks(0, 32) == []


def test_sweep_over_several_head_groups_and_without_a_head(net: models.LayeredNet, extracted, monkeypatch) -> None:
    ifm = ifms_of(extracted)["conv5"]
    windows = list(range(2, 23))
    target = int(extracted.attrs["target"])
    reference = one_at_a_time(net, ifm, "conv5", windows, target)
    monkeypatch.setattr(sweep_module, "HEAD_BATCH_SIZE", 8)  # 21 windows: head groups of 8, 8, 5
    grouped = sweep_ifm(net, ifm, layer="conv5", knob="nonzero_mean", values=windows, target=target, batch_size=3)
    np.testing.assert_allclose(grouped["probability"], reference, rtol=1e-5, atol=1e-7)
    assert head_layer(net, "conv5") is not None
    plain = sweep_ifm(
        net, ifm, layer="conv5", knob="nonzero_mean", values=windows, target=target, batch_size=4, head=False
    )
    np.testing.assert_allclose(plain["probability"], reference, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(plain["top1"], grouped["top1"])


def test_sweep_dataset_layout_and_provenance(net: models.LayeredNet, extracted) -> None:
    sweep = sweep_dataset(
        net, extracted, layer="pool5", knob="nonzero_mean", values=range(2, 12), attrs={"config_hash": "abc"}
    )
    assert sweep["probability"].dims == ("window",) and sweep["window"].values.tolist() == list(range(2, 12))
    assert sweep["top1"].dtype == np.int64
    attrs = sweep.attrs
    assert attrs["layer"] == "pool5" and attrs["knob"] == "nonzero_mean" and attrs["chain"] == ""
    assert attrs["p0"] == extracted.attrs["p0"] and attrs["target"] == extracted.attrs["target"]
    assert attrs["ifm_size"] == 64 * 13 * 13 and attrs["config_hash"] == "abc" and attrs["stand_in"] == 1
    noise = sweep_dataset(net, extracted, layer="fc6", knob="laplace", values=[0.0, 1.0])
    assert noise["probability"].dims == ("scale",)
    # scale 0 adds nothing: p equals p0
    assert float(noise["probability"][0]) == pytest.approx(float(extracted.attrs["p0"]), rel=1e-6)


def test_chain_equals_manual_pre_sanitization(net: models.LayeredNet, extracted) -> None:
    ifms = ifms_of(extracted)
    with torch.inference_mode():
        manual = net.ifms_from("norm2", ifmsan.sample_and_hold(ifms["norm2"], 3)[None])["pool5"][0]
        chained = apply_chain(net, ifms, parse_chain("norm2@3"), layer="pool5")
        assert torch.equal(chained, manual)
        two = apply_chain(net, ifms, parse_chain("norm1@2+norm2@3"), layer="pool5")
        step1 = net.ifms_from("norm1", ifmsan.sample_and_hold(ifms["norm1"], 2)[None])
        step2 = net.ifms_from("norm2", ifmsan.sample_and_hold(step1["norm2"][0], 3)[None])["pool5"][0]
        assert torch.equal(two, step2)
    sweep = sweep_dataset(
        net, extracted, layer="pool5", knob="nonzero_mean", values=[2, 5], chain=parse_chain("norm2@3")
    )
    expected = one_at_a_time(net, manual, "pool5", [2, 5], int(extracted.attrs["target"]))
    np.testing.assert_allclose(sweep["probability"].values, expected, rtol=1e-5, atol=1e-7)
    assert sweep.attrs["chain"] == "norm2@3"


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ("pool5@3", "network order"),
        ("norm2@3+norm1@2", "network order"),
        ("nope@2", "not an IFM layer"),
        ("norm2", "LAYER@WINDOW"),
        ("norm2@0", "LAYER@WINDOW"),
    ],
)
def test_bad_chains(net: models.LayeredNet, extracted, chain: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_chain(net, ifms_of(extracted), parse_chain(chain), layer="pool5")


def test_sweep_rejects_mismatched_model_and_layer(net: models.LayeredNet, extracted) -> None:
    with pytest.raises(ValueError, match="not an IFM layer"):
        sweep_dataset(net, extracted, layer="pool9", knob="nonzero_mean", values=[2])
    other = models.load("bvlc_alexnet")
    with pytest.raises(ValueError, match="extracted with model 'alexnet_mini'"):
        sweep_dataset(other, extracted, layer="pool5", knob="nonzero_mean", values=[2])
    assert parse_chain("") == () and parse_chain("a@2") == (ChainStep("a", 2),)


def test_sweep_takes_a_knob_object(net: models.LayeredNet, extracted) -> None:
    """A knob object in place of a name (as the benchmark passes a timed one): an identity knob leaves p at p0."""

    class Identity:
        name, parameter = "identity", "window"

        def apply_batch(self, ifm: torch.Tensor, values, *, out: torch.Tensor) -> torch.Tensor:
            return out.copy_(ifm.expand(out.shape))

    ifm = ifms_of(extracted)["pool5"]
    target = int(extracted.attrs["target"])
    curves = sweep_ifm(net, ifm, layer="pool5", knob=Identity(), values=[2, 3, 4], target=target, head=False)
    with torch.inference_mode():
        p0 = float(torch.softmax(net.forward_from("pool5", ifm[None]).double(), 1)[0, target])
    np.testing.assert_allclose(curves["probability"], p0, rtol=1e-6)


def test_read_ifms_reads_only_the_layers_asked_for(extracted, tmp_path: Path) -> None:
    """A sweep job reads its layer's IFM only: the others are checked to exist, not loaded; an unknown layer names
    the layers the file has; the IFMs read are the written ones bit for bit."""
    from ifmsan.steps.io import read_ifms

    write_netcdf(extracted, tmp_path / "ifms.nc")
    whole = ifms_of(read_ifms(tmp_path / "ifms.nc"))
    part = read_ifms(tmp_path / "ifms.nc", layers=["pool5", "norm2"])
    assert set(part.data_vars) == set(extracted.data_vars) - (set(whole) - {"pool5", "norm2"})
    assert set(part.encoding["skipped_variables"]) == set(whole) - {"pool5", "norm2"}
    got = ifms_of(part)
    assert list(got) == ["norm2", "pool5"] and all(torch.equal(got[k], whole[k]) for k in got)
    with pytest.raises(ValueError, match=r"holds no IFM of layer pool9; it has conv1, norm1, .*fc8"):
        read_ifms(tmp_path / "ifms.nc", layers=["pool5", "pool9"])
    broken = extracted.drop_vars("conv1")
    write_netcdf(broken, tmp_path / "broken.nc")
    with pytest.raises(ValueError, match="lacks variable conv1"):  # a missing layer is found without loading it
        read_ifms(tmp_path / "broken.nc", layers=["pool5"])


def test_fault_in_touches_one_value_per_page_of_a_cpu_buffer() -> None:
    """The sweep's batch buffer is faulted in at allocation (not in the first sanitizer call): one write per 4 KiB page."""
    from ifmsan.steps.sweep import fault_in

    buffer = torch.full((3, 5000), 7.0)
    assert fault_in(buffer) is buffer
    flat = buffer.view(-1)
    touched = torch.zeros_like(flat, dtype=torch.bool)
    touched[::1024] = True  # 1024 float32 = 4 KiB
    assert bool((flat[touched] == 0).all()) and bool((flat[~touched] == 7.0).all())
    doubles = torch.full((1500,), 7.0, dtype=torch.float64)
    fault_in(doubles)
    assert int((doubles == 0).sum()) == 3  # 0, 512, 1024
    assert fault_in(torch.empty(0)).numel() == 0


def test_drain_in_threads_runs_every_item_once_on_reused_threads() -> None:
    """The kernels' thread split: each item exactly once, the helper threads kept between calls, errors raised."""
    import threading

    from ifmsan._shared.jit import drain_in_threads

    names: set[str] = set()
    for call in range(3):
        seen: list[int] = []
        lock = threading.Lock()

        def task(item: int, seen: list[int] = seen, lock: threading.Lock = lock) -> None:
            with lock:
                seen.append(item)
                names.add(threading.current_thread().name)

        drain_in_threads(task, 40, workers=3)
        assert sorted(seen) == list(range(40)), call
    helpers = {name for name in names if name.startswith("ifmsan-kernel")}
    assert len(helpers) <= 2  # at most workers - 1 helpers over all three calls: the same threads each time

    def fail(item: int) -> None:
        if item == 5:
            raise RuntimeError("item 5 failed")

    with pytest.raises(RuntimeError, match="item 5 failed"):
        drain_in_threads(fail, 10, workers=2)


def test_a_sweep_runs_without_autograd(net, extracted, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain, the p0 recheck and the sweep build no graph: each forward pass would otherwise hold its activations."""
    seen: list[bool] = []
    real = sweep_module.sweep_ifm

    def recording(*args, **kwargs):
        seen.append(torch.is_inference_mode_enabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "sweep_ifm", recording)
    sweep_dataset(net, extracted, layer="pool5", knob="nonzero_mean", values=[2, 3], chain=parse_chain("conv2@3"))
    assert seen == [True]
