"""Provenance cannot lie, failed commands leave nothing, files are of the kind a verb expects, and stages refuse
inputs that do not belong together, files of the wrong kind. CLI runs in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image
from sweep_fixtures import concat_images, make_sweep, write_sweep

from ifmsan import models
from ifmsan.cli import main
from ifmsan.steps import io
from ifmsan.steps.extract import extract_ifms
from ifmsan.steps.sweep import parse_chain, sweep_dataset

MODEL = ["--model", "alexnet_mini"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One image's IFMs and two sweeps of pool5 (nonzero_mean, first), made by the CLI with config_hash=abc."""
    root = tmp_path_factory.mktemp("made")
    image = root / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    ifms = root / "ifms.nc"
    assert main(["extract", *MODEL, "--image", str(image), "--image-id", "img", "--out", str(ifms),
                 "--attr", "config_hash=abc"]) == 0  # fmt: skip
    assert main(["sweep", *MODEL, "--ifms", str(ifms), "--layer", "pool5", "--values", "2:4", "--knob", "nonzero_mean",
                 "first", "--out-dir", str(root / "sw"), "--attr", "config_hash=abc"]) == 0  # fmt: skip
    return {"image": image, "ifms": ifms, "sweep": root / "sw" / "nonzero_mean.nc", "first": root / "sw" / "first.nc"}


def files_in(folder: Path) -> list[str]:
    """Every file below a folder (hidden temporaries included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def variant(
    source: Path, out: Path, *, drop_attrs: tuple[str, ...] = (), drop_vars: tuple[str, ...] = (), **attrs
) -> Path:
    """A copy of a NetCDF file with some attributes changed or removed and some variables dropped."""
    dataset = io.read_netcdf(source).drop_vars(list(drop_vars))
    for key in drop_attrs:
        dataset.attrs.pop(key, None)
    dataset.attrs.update(attrs)
    return io.write_netcdf(dataset, out)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI run."""
    code = main(args)
    return code, capsys.readouterr().err


# --- 3. --attr cannot overwrite what the library computes ------------------------------------------------------

EXTRACT_KEYS = ["target", "p0", "model", "weights_sha", "image_id", "image_sha256", "stand_in", "trained",
                "ifmsan_version", "original_top1_name", "ifmsan_kind"]  # fmt: skip
SWEEP_KEYS = ["p0", "target", "target_source", "layer", "knob", "chain", "seed", "weights_source", "zero_ratio",
              "n_zeros", "image_id", "parameter"]  # fmt: skip
GAMMA_KEYS = ["p0", "weights_sha", "model"]


def verb_args(verb: str, made: dict[str, Path], out: Path) -> list[str]:
    """A complete, valid command line of a model-using verb writing below `out`."""
    if verb == "extract":
        return ["extract", *MODEL, "--image", str(made["image"]), "--image-id", "img", "--out", str(out / "x.nc")]
    if verb == "sweep":
        return [
            "sweep",
            *MODEL,
            "--ifms",
            str(made["ifms"]),
            "--layer",
            "pool5",
            "--values",
            "2:3",
            "--out",
            str(out / "x.nc"),
        ]
    return [
        "gamma",
        *MODEL,
        "--ifms",
        str(made["ifms"]),
        "--layers",
        "pool5",
        "--values",
        "2:3",
        "--out",
        str(out / "x.csv"),
    ]


@pytest.mark.parametrize(
    ("verb", "key"),
    [("extract", k) for k in EXTRACT_KEYS] + [("sweep", k) for k in SWEEP_KEYS] + [("gamma", k) for k in GAMMA_KEYS],
)
def test_attr_computed_key_is_refused(made, tmp_path: Path, capsys, verb: str, key: str) -> None:
    code, err = run_cli([*verb_args(verb, made, tmp_path / "out"), "--attr", f"{key}=0.99"], capsys)
    assert code == 2
    assert f"--attr may not set {key}: the library computes these keys" in err and "weights_sha" in err
    assert "Traceback" not in err and files_in(tmp_path) == []


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        (["_FillValue=1"], "not starting with '_'"),
        (["_NCProperties=x"], "not starting with '_'"),
        ([f"{'k' * 65}=x"], "at most 64 characters"),
        (["1abc=x"], "KEY an identifier"),
        (["novalue"], "must look like KEY=VALUE"),
        (["a-b=x"], "KEY an identifier"),
        (["=x"], "KEY an identifier"),
        (["note2=\udcff"], "not valid UTF-8"),
        (["run=a", "--attr", "run=b"], "given twice"),
    ],
    ids=[
        "underscore-fillvalue",
        "underscore-ncproperties",
        "key-65-chars",
        "digit-first",
        "no-equals",
        "dash",
        "empty-key",
        "surrogate-value",
        "conflicting-repeat",
    ],  # fmt: skip
)
def test_attr_malformed_is_refused(made, tmp_path: Path, capsys, attr: list[str], message: str) -> None:
    code, err = run_cli([*verb_args("sweep", made, tmp_path / "out"), "--attr", *attr], capsys)
    assert code == 2 and message in err and files_in(tmp_path) == []


def test_user_attrs_are_written_next_to_computed_ones(made, tmp_path: Path) -> None:
    out = tmp_path / "s.nc"
    args = ["--attr", "config_hash=abc", "--attr", "run=r1", "--attr", "run=r1", "--attr", "operator=me=you"]
    assert main([*verb_args("sweep", made, tmp_path)[:-2], "--out", str(out), *args]) == 0
    attrs = io.read_sweep(out).attrs
    assert (attrs["config_hash"], attrs["run"], attrs["operator"]) == ("abc", "r1", "me=you")
    assert (
        attrs["p0"] == pytest.approx(float(io.read_ifms(made["ifms"]).attrs["p0"])) and attrs["ifmsan_kind"] == "sweep"
    )


def test_reserved_list_is_exactly_what_extract_sweep_and_attack_compute(made, tmp_path: Path) -> None:
    ifms = io.read_ifms(made["ifms"])
    only_some = {"preprocess", "weights_content_xxh3"}  # bvlc_alexnet only; its converted weights only
    assert set(ifms.attrs) - {"config_hash"} == set(io.IFMS_ATTRS) - only_some
    net = models.load("alexnet_mini")
    chained = sweep_dataset(net, ifms, layer="pool5", knob="nonzero_mean", values=[2], chain=parse_chain("conv5@2"))
    assert set(chained.attrs) - {"config_hash"} == set(io.SWEEP_ATTRS) - only_some
    from ifmsan.steps.extract import provenance

    assert provenance(models.load("bvlc_alexnet", preprocess="pycaffe"))["preprocess"] == "pycaffe"
    attack = tmp_path / "attack.nc"
    assert main([
        "attack", "--model", "alexnet_mini", "--layer", "fc8", "--knob", "first", "--values", "3", "--n-train", "2",
        "--n-test", "2", "--epochs-adaptive", "0", "--epochs-inversion", "1", "--epochs-attribute", "1",
        "--resolution", "32", "--n-examples", "1", "--out", str(attack),
    ]) == 0  # fmt: skip
    optional = {"optimize_images", "optimize_iterations", "optimize_lr", "optimize_tv", "mean_image_mse", "knob_sigma",
                "knob_calibration_std", "noise_scale"}  # the optimization attack's and the calibrated knobs'  # fmt: skip
    assert set(io.read_attack(attack).attrs) == set(io.ATTACK_ATTRS) - only_some - optional
    assert set(io.RESERVED_ATTRS) == set(io.IFMS_ATTRS) | set(io.SWEEP_ATTRS) | set(io.ATTACK_ATTRS) | set(
        io.CERTIFY_MAPS_ATTRS
    )


@pytest.mark.parametrize("key", ["target", "p0", "ifm_layers"])
def test_library_extract_refuses_computed_attrs(key: str) -> None:
    net = models.load("alexnet_mini")
    with pytest.raises(ValueError, match=f"attrs may not set {key}"):
        extract_ifms(net, net.preprocess(Image.new("RGB", (64, 64))), attrs={"image_id": "a", key: 3})


def test_library_sweep_refuses_computed_attrs(made) -> None:
    with pytest.raises(ValueError, match="attrs may not set p0"):
        sweep_dataset(models.load("alexnet_mini"), io.read_ifms(made["ifms"]), layer="pool5", knob="first",
                      values=[2], attrs={"p0": 0.99})  # fmt: skip


@pytest.mark.parametrize("verb", ["sweep", "gamma"])
def test_attr_config_hash_must_match_the_ifms(made, tmp_path: Path, capsys, verb: str) -> None:
    code, err = run_cli([*verb_args(verb, made, tmp_path / "out"), "--attr", "config_hash=zzz"], capsys)
    assert code == 2 and "made under config_hash 'abc'" in err and "config_hash=zzz" in err and str(made["ifms"]) in err
    assert files_in(tmp_path) == []


# --- 3. a failed command leaves nothing --------------------------------------------------------------------------


def _disk_full_after(calls: int):
    """A Dataset.to_netcdf that writes some bytes and then fails like a full disk, from call number `calls` on."""
    original = xr.Dataset.to_netcdf
    count = {"n": 0}

    def to_netcdf(self, path=None, *args, **kwargs):
        count["n"] += 1
        if count["n"] < calls:
            return original(self, path, *args, **kwargs)
        Path(path).write_bytes(b"CDF\x01 half a file")
        raise OSError(28, "No space left on device")

    return to_netcdf


@pytest.mark.parametrize(
    ("verb", "extra", "fail_at"),
    [
        ("extract", [], 1),
        ("sweep", [], 1),
        ("sweep", ["--knob", "nonzero_mean", "first", "--out-dir", "OUT"], 2),
    ],
    ids=["extract-disk-full", "sweep-disk-full", "sweep-second-knob-disk-full"],
)
def test_failed_netcdf_write_leaves_no_file(made, tmp_path: Path, capsys, monkeypatch, verb, extra, fail_at) -> None:
    out = tmp_path / "out"
    args = verb_args(verb, made, out)
    if extra:
        args = [*args[:-2], *[str(out) if e == "OUT" else e for e in extra]]
    monkeypatch.setattr(xr.Dataset, "to_netcdf", _disk_full_after(fail_at))
    code, err = run_cli(args, capsys)
    assert code == 2 and "No space left on device" in err
    assert files_in(tmp_path) == []  # no output, no temporary sibling, not the first knob's file either


def test_gamma_csv_write_failure_leaves_nothing(made, tmp_path: Path, capsys, monkeypatch) -> None:
    def to_csv(self, path=None, *args, **kwargs):
        Path(path).write_text("layer,gamma\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    code, err = run_cli(verb_args("gamma", made, tmp_path / "out"), capsys)
    assert code == 2 and "No space left" in err and files_in(tmp_path) == []


def test_gamma_that_disagrees_with_its_sweep_writes_no_csv(made, tmp_path: Path, capsys) -> None:
    sweep = io.read_sweep(made["sweep"])
    sweep["probability"] = sweep["probability"] * 0 + 1e-6  # claims n*(γ) = 2, which the controller does not find
    fake = io.write_netcdf(sweep, tmp_path / "fake.nc")
    code, err = run_cli([*verb_args("gamma", made, tmp_path / "out"), "--sweeps", str(fake)], capsys)
    assert code == 2 and "disagrees with the sweep" in err and files_in(tmp_path / "out") == []


def test_report_write_failure_removes_the_files_already_written(tmp_path: Path, capsys, monkeypatch) -> None:
    files = [str(write_sweep(make_sweep([0.9, 0.5, 0.2]), tmp_path / "a.nc"))]
    original, count = Path.write_text, {"n": 0}

    def write_text(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    code, err = run_cli(["report", "--sweeps", *files, "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "No space left" in err and count["n"] == 3 and not (tmp_path / "out").exists()


def test_figures_failure_removes_the_figures_already_drawn(tmp_path: Path, capsys, monkeypatch) -> None:
    from ifmsan.report import figures

    sweeps = [make_sweep(np.linspace(0.9, 0.1, 8), layer=layer) for layer in ("pool5", "fc6")]
    files = [str(write_sweep(s, tmp_path / f"{i}.nc")) for i, s in enumerate(sweeps)]
    drawn = []

    def effsan_fails(*args, **kwargs):
        drawn.extend(files_in(tmp_path / "out"))
        raise ValueError("effsan broke")

    monkeypatch.setattr(figures, "effsan_per_layer", effsan_fails)
    code, err = run_cli(["figures", "--sweeps", *files, "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "effsan broke" in err
    assert "figure4.png" in drawn and "heatmap.pdf" in drawn  # these existed, and are gone again
    assert not (tmp_path / "out").exists()


# --- 7. a file of the wrong kind ---------------------------------------------------------------------------------


def _neither(tmp_path: Path) -> Path:
    return io.write_netcdf(xr.Dataset({"x": (("a",), np.arange(3.0))}), tmp_path / "neither.nc")


WRONG_KIND = [
    ("sweep-ifms-is-sweep", "sweep", "--ifms", "first", "is a sweep file (layer pool5, knob first); expected the IFM file written by `ifmsan extract`"),
    ("gamma-ifms-is-sweep", "gamma", "--ifms", "sweep", "is a sweep file (layer pool5, knob nonzero_mean); expected the IFM file"),
    ("gamma-sweeps-is-ifms", "gamma", "--sweeps", "ifms", "is an IFM file (image img, model alexnet_mini); expected a sweep file written by `ifmsan sweep`"),
    ("report-sweeps-is-ifms", "report", "--sweeps", "ifms", "is an IFM file (image img, model alexnet_mini); expected a sweep file"),
    ("figures-sweeps-is-ifms", "figures", "--sweeps", "ifms", "is an IFM file (image img, model alexnet_mini); expected a sweep file"),
    ("sweep-ifms-is-neither", "sweep", "--ifms", "neither", "is neither an IFM file nor a sweep file"),
    ("report-sweeps-is-neither", "report", "--sweeps", "neither", "is neither an IFM file nor a sweep file"),
    ("sweep-ifms-unknown-kind", "sweep", "--ifms", "bogus", "is a file of kind 'bogus'; expected the IFM file"),
    ("report-sweeps-unknown-kind", "report", "--sweeps", "bogus", "is a file of kind 'bogus'; expected a sweep file"),
    ("sweep-ifms-lacks-layer-variable", "sweep", "--ifms", "no_conv1", "lacks variable conv1; expected the IFM file"),
    ("sweep-ifms-lacks-target", "sweep", "--ifms", "no_target", "lacks attribute target; expected the IFM file"),
    ("gamma-ifms-target-out-of-range", "gamma", "--ifms", "target_99", "target 99 is not a class index in [0, 10)"),
    ("sweep-ifms-target-not-a-number", "sweep", "--ifms", "target_text", "must be numbers"),
    ("sweep-ifms-target-fraction", "sweep", "--ifms", "target_half", "must be numbers"),
    ("sweep-ifms-target-infinite", "sweep", "--ifms", "target_inf", "must be numbers"),
    ("report-sweep-target-not-a-number", "report", "--sweeps", "sweep_target_text", "target 'three' is not a class index"),
    ("report-sweep-target-fraction", "report", "--sweeps", "sweep_target_half", "is not a class index"),
    ("report-sweep-target-infinite", "report", "--sweeps", "sweep_target_inf", "is not a class index"),
    ("report-sweep-lacks-probability", "report", "--sweeps", "no_probability", "lacks probability; expected a sweep file"),
    ("report-sweep-lacks-knob", "report", "--sweeps", "no_knob", "lacks attribute knob; expected a sweep file"),
    ("sweep-out-is-its-ifms", "sweep", "--out", "ifms", "is the input --ifms"),
]  # fmt: skip


def _wrong(name: str, made: dict[str, Path], tmp_path: Path) -> Path:
    """The bad file a WRONG_KIND case names."""
    if name in made:
        return made[name]
    ifms, sweep = made["ifms"], made["sweep"]
    return {
        "neither": lambda: _neither(tmp_path),
        "bogus": lambda: variant(ifms, tmp_path / "bogus.nc", ifmsan_kind="bogus"),
        "no_conv1": lambda: variant(ifms, tmp_path / "no_conv1.nc", drop_vars=("conv1",)),
        "no_target": lambda: variant(ifms, tmp_path / "no_target.nc", drop_attrs=("target",)),
        "target_99": lambda: variant(ifms, tmp_path / "target_99.nc", target=99),
        "target_text": lambda: variant(ifms, tmp_path / "target_text.nc", target="three"),
        "target_half": lambda: variant(ifms, tmp_path / "target_half.nc", target=2.5),
        "target_inf": lambda: variant(ifms, tmp_path / "target_inf.nc", target=np.inf),
        "sweep_target_text": lambda: variant(sweep, tmp_path / "sweep_target_text.nc", target="three"),
        "sweep_target_half": lambda: variant(sweep, tmp_path / "sweep_target_half.nc", target=2.5),
        "sweep_target_inf": lambda: variant(sweep, tmp_path / "sweep_target_inf.nc", target=np.inf),
        "no_probability": lambda: variant(sweep, tmp_path / "no_probability.nc", drop_vars=("probability",)),
        "no_knob": lambda: variant(sweep, tmp_path / "no_knob.nc", drop_attrs=("knob",)),
    }[name]()


@pytest.mark.parametrize(
    ("verb", "option", "name", "message"), [c[1:] for c in WRONG_KIND], ids=[c[0] for c in WRONG_KIND]
)
def test_a_file_of_the_wrong_kind_is_named(made, tmp_path: Path, capsys, verb, option, name, message) -> None:
    bad = _wrong(name, made, tmp_path)
    out = tmp_path / "out"
    if verb in ("report", "figures"):
        args = [verb, "--sweeps", str(bad), "--out-dir", str(out)]
    else:
        args = verb_args(verb, made, out)
        if option == "--out":
            args = [*args[:-2], "--out", str(bad)]
        else:
            args = (
                [*args[: args.index(option) + 1], str(bad), *args[args.index(option) + 2 :]]
                if option in args
                else [*args, option, str(bad)]
            )
    before = files_in(tmp_path)
    code, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    if option != "--out":
        assert str(bad) in err
    assert files_in(tmp_path) == before


def test_files_without_a_kind_attribute_are_read_by_their_structure(made, tmp_path: Path, capsys) -> None:
    old_ifms = variant(made["ifms"], tmp_path / "old_ifms.nc", drop_attrs=("ifmsan_kind",))
    old_sweep = variant(made["sweep"], tmp_path / "old_sweep.nc", drop_attrs=("ifmsan_kind",))
    assert io.file_kind(io.read_netcdf(old_ifms)) == "ifms" and io.file_kind(io.read_netcdf(old_sweep)) == "sweep"
    assert (
        main(
            [
                "sweep",
                *MODEL,
                "--ifms",
                str(old_ifms),
                "--layer",
                "fc6",
                "--values",
                "2",
                "--out",
                str(tmp_path / "s.nc"),
            ]
        )
        == 0
    )
    assert main(["report", "--sweeps", str(old_sweep), "--out-dir", str(tmp_path / "rep")]) == 0
    with pytest.raises(ValueError, match="is a sweep file"):
        io.read_ifms(old_sweep)


# --- 4. stages check that their inputs belong together -----------------------------------------------------------

GAMMA_MIXES = [
    ("ifms-other-init-seed", "ifms", {}, ["--init-seed", "1"], "extracted with weights 'seeded Kaiming-normal initialisation (seed 0)'"),
    ("ifms-other-weights", "ifms", {"weights_sha": "f" * 64}, [], f"extracted with weights '{'f' * 64}'"),
    ("ifms-other-model", "ifms", {"model": "torchvision:alexnet"}, [], "extracted with model 'torchvision:alexnet', not 'alexnet_mini'"),
    ("sweep-other-image", "sweep", {"image_id": "other"}, [], "was made with image_id 'other', but"),
    ("sweep-other-image-bytes", "sweep", {"image_sha256": "0" * 64}, [], f"was made with image_sha256 '{'0' * 64}'"),
    ("sweep-other-weights", "sweep", {"weights_sha": "e" * 64}, [], f"was made with weights '{'e' * 64}'"),
    ("sweep-other-init-seed", "sweep", {"weights_source": "seeded Kaiming-normal initialisation (seed 7)"}, [], "(seed 7)'"),
    ("sweep-other-model", "sweep", {"model": "bvlc_alexnet"}, [], "was made with model 'bvlc_alexnet'"),
    ("sweep-other-config", "sweep", {"config_hash": "xyz"}, [], "was made with config_hash 'xyz', but"),
    ("sweep-other-target", "sweep", {"target": 7}, [], "was made with target '7'"),
    ("sweep-other-target-source", "sweep", {"target_source": "ground_truth"}, [], "was made with target_source 'ground_truth'"),
    ("sweep-other-knob", "first", {}, [], "is a sweep of knob 'first'; the controller runs knob 'nonzero_mean'"),
    ("sweep-chained", "sweep", {"chain": "conv5@2"}, [], "with chain conv5@2"),
    ("sweep-layer-not-run", "sweep", {"layer": "fc6"}, [], "is a sweep of layer 'fc6', which is not in --layers (pool5)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("which", "attrs", "extra", "message"), [c[1:] for c in GAMMA_MIXES], ids=[c[0] for c in GAMMA_MIXES]
)
def test_gamma_refuses_inputs_that_do_not_belong_together(
    made, tmp_path: Path, capsys, which, attrs, extra, message
) -> None:
    ifms, sweeps = made["ifms"], [made["sweep"]]
    if which == "ifms":  # the IFMs against the network: no sweeps, which would be refused first
        ifms = variant(made["ifms"], tmp_path / "ifms.nc", **attrs) if attrs else ifms
        sweeps = []
    elif which == "first":
        sweeps = [made["first"]]
    elif which == "sweep":
        sweeps = [variant(made["sweep"], tmp_path / "sweep.nc", **attrs)]
    args = ["gamma", *MODEL, *extra, "--ifms", str(ifms), "--layers", "pool5", "--values", "2:3",
            "--sweeps", *map(str, sweeps), "--out", str(tmp_path / "out" / "g.csv")]  # fmt: skip
    code, err = run_cli(args, capsys)
    assert code == 2 and message in err and str(ifms if which == "ifms" else sweeps[0]) in err
    assert not (tmp_path / "out").exists()


def test_gamma_refuses_two_sweeps_of_a_layer_and_a_sweep_of_many_images(made, tmp_path: Path, capsys) -> None:
    twin = variant(made["sweep"], tmp_path / "twin.nc")
    many = io.write_netcdf(
        concat_images([io.read_sweep(made["sweep"]), variant_ds(made["sweep"], image_id="b")]), tmp_path / "many.nc"
    )
    base = [
        "gamma",
        *MODEL,
        "--ifms",
        str(made["ifms"]),
        "--layers",
        "pool5",
        "--values",
        "2:3",
        "--out",
        str(tmp_path / "g.csv"),
    ]
    code, err = run_cli([*base, "--sweeps", str(made["sweep"]), str(twin)], capsys)
    assert code == 2 and "are both sweeps of layer 'pool5'; give one per layer" in err
    code, err = run_cli([*base, "--sweeps", str(many)], capsys)
    assert code == 2 and "many.nc holds several images" in err
    assert not (tmp_path / "g.csv").exists()
    assert main([*base, "--sweeps", str(made["sweep"])]) == 0  # the matching sweep is accepted and compared
    assert pd.read_csv(tmp_path / "g.csv")["matches_sweep"].all()


def variant_ds(source: Path, **attrs) -> xr.Dataset:
    """A sweep Dataset with some attributes changed (per-image keys as concat_images expects them)."""
    dataset = io.read_sweep(source)
    dataset.attrs.update(attrs)
    return dataset


def test_sweep_names_the_ifm_file_made_with_other_weights(made, tmp_path: Path, capsys) -> None:
    other = variant(made["ifms"], tmp_path / "ifms.nc", weights_sha="d" * 64)
    code, err = run_cli(
        ["sweep", *MODEL, "--ifms", str(other), "--layer", "pool5", "--out", str(tmp_path / "o" / "s.nc")], capsys
    )
    assert code == 2 and f"{other}: the IFMs were extracted with weights '{'d' * 64}'" in err
    assert not (tmp_path / "o").exists()


REPORT_MIXES = [
    ("weights", {"weights_sha": "f" * 64}, "the sweeps mix weights values"),
    ("model", {"model": "bvlc_alexnet"}, "the sweeps mix model values"),
    ("config-hash", {"config_hash": "other"}, "the sweeps mix config_hash values"),
    ("target-source", {"target_source": "ground_truth"}, "the sweeps mix target_source values"),
]  # fmt: skip


@pytest.mark.parametrize(("attrs", "message"), [c[1:] for c in REPORT_MIXES], ids=[c[0] for c in REPORT_MIXES])
def test_report_refuses_a_mixture_unless_allowed(tmp_path: Path, capsys, attrs: dict, message: str) -> None:
    a = write_sweep(make_sweep([0.9, 0.5, 0.2]), tmp_path / "a.nc")
    b = make_sweep([0.9, 0.8, 0.1], layer="fc6")
    b.attrs.update(attrs)
    b = write_sweep(b, tmp_path / "b.nc")
    code, err = run_cli(["report", "--sweeps", str(a), str(b), "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err and str(a) in err and str(b) in err and "--allow-mixed" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("attrs", "message"),
    [({"target": 5}, "mix target values"), ({"image_sha256": "2" * 64}, "mix image_sha256 values")],
    ids=["same-image-other-target", "same-image-other-bytes"],
)
def test_report_refuses_one_image_with_two_targets_even_when_mixing_is_allowed(
    tmp_path: Path, capsys, attrs, message
) -> None:
    a = write_sweep(make_sweep([0.9, 0.5, 0.2]), tmp_path / "a.nc")
    b = write_sweep(
        make_sweep([0.9, 0.8, 0.1], layer="fc6", **({"target": attrs["target"]} if "target" in attrs else {})),
        tmp_path / "b.nc",
    )
    if "image_sha256" in attrs:
        b = variant(b, tmp_path / "b2.nc", **attrs)
    code, err = run_cli(
        ["report", "--sweeps", str(a), str(b), "--out-dir", str(tmp_path / "out"), "--allow-mixed"], capsys
    )
    assert code == 2 and f"the sweeps of image 'img0' {message}" in err and str(a) in err and str(b) in err
    assert not (tmp_path / "out").exists()


def test_report_allow_mixed_keeps_the_weights_apart(tmp_path: Path) -> None:
    a = write_sweep(make_sweep([0.9, 0.5, 0.2]), tmp_path / "a.nc")
    other = make_sweep([0.9, 0.9, 0.9])
    other.attrs["weights_sha"] = "f" * 64
    b = write_sweep(other, tmp_path / "b.nc")
    out = tmp_path / "out"
    assert main(["report", "--sweeps", str(a), str(b), "--out-dir", str(out), "--allow-mixed", "--gammas", "1"]) == 0
    table1 = pd.read_csv(out / "table1.csv")
    assert table1["weights"].tolist() == ["0" * 64, "f" * 64] and table1["n_images"].tolist() == [1, 1]
    assert table1["eff_san"].tolist() == [1.0, pytest.approx(1 / 3)]
    assert len(pd.read_csv(out / "gamma_summary.csv")) == 2 and "weights" in pd.read_csv(out / "gamma_report.csv")
    assert f"alexnet_mini (weights {'f' * 64}), knob nonzero_mean" in (out / "table1.md").read_text()


def test_report_of_many_images_of_one_network_needs_no_flag(tmp_path: Path) -> None:
    files = [
        str(write_sweep(make_sweep([0.9, 0.5, 0.1 * i], image_id=f"im{i}", target=i), tmp_path / f"{i}.nc"))
        for i in range(3)
    ]
    assert main(["report", "--sweeps", *files, "--out-dir", str(tmp_path / "out")]) == 0
    assert pd.read_csv(tmp_path / "out" / "table1.csv")["n_images"].tolist() == [3]
    assert "weights" not in pd.read_csv(tmp_path / "out" / "table1.csv")


@pytest.mark.parametrize(
    ("attrs", "message"),
    [({"weights_sha": "f" * 64}, ("mix weights values", "own `ifmsan figures` run")),
     ({"config_hash": "x"}, ("mix config_hash values", "own `ifmsan figures` run")),
     ({"target": 4}, ("image 'img0' mix target values", "its own image id"))],
    ids=["weights", "config-hash", "target"],
)  # fmt: skip
def test_figures_refuse_curves_of_one_image_that_do_not_belong_together(tmp_path: Path, capsys, attrs, message) -> None:
    a = write_sweep(make_sweep(np.linspace(0.9, 0.1, 8)), tmp_path / "a.nc")
    b = make_sweep(np.linspace(0.9, 0.2, 8), layer="fc6")
    b.attrs.update(attrs)
    b = write_sweep(b, tmp_path / "b.nc")
    code, err = run_cli(["figures", "--sweeps", str(a), str(b), "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and message[0] in err and str(b) in err and message[1] in err
    assert not (tmp_path / "out").exists()
