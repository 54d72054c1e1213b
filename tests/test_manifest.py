"""ifmsan.workflow.manifest and config/imagenet1000.yaml: a config made from the ImageNet sample manifest, valid, complete and
reproducible from the manifest; a malformed manifest is a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ifmsan.report.groups import load_image_groups
from ifmsan.workflow import configcheck, manifest, plan, schema

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO / "config" / "imagenet1000.yaml"
CONFIG = yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
BASE = yaml.safe_load((REPO / "config" / "imagenet16.yaml").read_text(encoding="utf-8"))
SHARED_MANIFEST = REPO.parent / "shared" / "data" / "imagenet-samples" / "MANIFEST.tsv"
SCHEMA = schema.load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")

HEADER = "file\tclass_index\twnid\tlabel\tsha256\tbytes\turl\n"
SHA = "ab" * 32
URL = "https://example.org/images/"


def row(file: str = "n01_tench.JPEG", class_index: str = "0", sha256: str = SHA, url: str | None = None) -> str:
    """One manifest line (the url defaults to URL + file)."""
    return "\t".join([file, class_index, "n01", "tench", sha256, "123", url or URL + file]) + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "MANIFEST.tsv"
    path.write_text(text, encoding="utf-8")
    return path


# --- the committed config ---------------------------------------------------------------------------------------


def test_committed_config_passes_schema_and_configcheck() -> None:
    schema.check_schema(CONFIG, SCHEMA)
    configcheck.check_config(CONFIG, cuda_available=False, files=False)


def test_committed_config_has_every_class_once() -> None:
    images = CONFIG["images"]
    assert len(images) == 1000
    ids = [image["id"] for image in images]
    assert len(set(ids)) == 1000
    assert sorted(image["target"] for image in images) == list(range(1000))
    assert all(image["source"].startswith("https://") and len(image["sha256"]) == 64 for image in images)
    assert {image["group"] for image in images} == {"animal", "artifact", "food", "nature", "person"}
    assert all(image["group"] == manifest.imagenet_group(image["target"]) for image in images)


def test_committed_config_keeps_imagenet16s_model_and_the_papers_ranges() -> None:
    assert CONFIG["run"] == "imagenet1000"
    assert CONFIG["model"] == BASE["model"]
    assert CONFIG["layers"] == BASE["layers"] and len(CONFIG["layers"]) == 13
    assert CONFIG["windows"] == {"start": 2, "stop": 150, "step": 1}
    assert CONFIG["knobs"] == ["nonzero_mean"] and CONFIG["chains"] == []
    assert CONFIG["gammas"] == [0.25, 0.5, 1, 2, 3, 4]
    # imagenet16's 16 images are among the 1000, with the same id, URL, checksum and target
    by_id = {image["id"]: image for image in CONFIG["images"]}
    for image in BASE["images"]:
        assert {key: by_id[image["id"]][key] for key in image} == image


def test_committed_config_plan_and_job_counts() -> None:
    planned = plan.plan(CONFIG)
    assert planned.layers == tuple(BASE["layers"]) and planned.knobs == ("nonzero_mean",) and planned.chains == ()
    assert planned.figures == ("figure4", "heatmap", "effsan")
    assert planned.tables == (
        "table1.csv", "table1.md", "gamma_report.csv", "gamma_report.md", "gamma_summary.csv", "gamma_summary.md",
        "table1_per_image.csv",
    )  # fmt: skip
    assert planned.notebooks == ("inspect_ifms", "compare_knobs") and planned.attacks == ()
    # one image job per image, i.e. one cluster job per image (planned_jobs is checked against `snakemake -n` in
    # tests/test_workflow.py)
    assert plan.planned_jobs(CONFIG) == {
        "fetch_weights": 1,
        "convert_weights": 1,
        "fetch_mean_file": 1,
        "fetch_image": 1000,
        "image": 1000,
        "tables": 1,
        "figures": 1000,
        "notebook": 2,
        "all": 1,
    }
    header = CONFIG_FILE.read_text(encoding="utf-8").split("\nrun:")[0]
    assert "plans about 3007 jobs" in header
    assert "With profiles/slurm 1000 of them (image) go to the cluster" in " ".join(
        line.lstrip("# ") for line in header.splitlines()
    )
    assert "snakemake --profile profiles/slurm --configfile config/imagenet1000.yaml" in header
    assert (
        "python -m ifmsan.workflow.manifest MANIFEST.tsv --base config/imagenet16.yaml --out config/imagenet1000.yaml"
        in header
    )


def test_committed_config_gives_the_report_its_groups() -> None:
    groups = load_image_groups(CONFIG_FILE)
    assert len(groups) == 1000 and groups["n02056570_king_penguin"] == "animal"
    assert groups["n15075141_toilet_tissue"] == "artifact"


@pytest.mark.skipif(not SHARED_MANIFEST.is_file(), reason=f"the manifest is not here ({SHARED_MANIFEST})")
def test_regenerating_from_the_manifest_gives_the_committed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "imagenet16.yaml", tmp_path / "config" / "imagenet16.yaml")
    monkeypatch.chdir(tmp_path)
    args = [str(SHARED_MANIFEST), "--base", "config/imagenet16.yaml", "--out", "config/imagenet1000.yaml"]
    assert manifest.main(args) == 0
    assert (tmp_path / "config" / "imagenet1000.yaml").read_text(encoding="utf-8") == CONFIG_FILE.read_text(
        encoding="utf-8"
    )


@pytest.mark.skipif(not SHARED_MANIFEST.is_file(), reason=f"the manifest is not here ({SHARED_MANIFEST})")
def test_groups_follow_the_manifests_labels() -> None:
    """The group borders sit where the labels say (IMAGENET_GROUPS' docstring)."""
    labels = {r.class_index: r.label for r in manifest.read_manifest(SHARED_MANIFEST)}
    borders = {0: "tench", 397: "puffer", 398: "abacus", 922: "menu", 923: "plate", 969: "eggnog", 970: "alp",
               980: "volcano", 981: "ballplayer", 983: "scuba_diver", 984: "rapeseed", 998: "ear", 999: "toilet_tissue"}  # fmt: skip
    assert {index: labels[index] for index in borders} == borders


# --- the library ------------------------------------------------------------------------------------------------


def test_imagenet_groups_cover_every_class_once() -> None:
    counts: dict[str, int] = {}
    for index in range(1000):
        group = manifest.imagenet_group(index)
        counts[group] = counts.get(group, 0) + 1
    assert counts == {"animal": 398, "artifact": 526, "food": 47, "nature": 26, "person": 3}
    assert [manifest.imagenet_group(i) for i in (397, 398, 922, 923, 969, 970, 980, 981, 983, 984, 998, 999)] == [
        "animal", "artifact", "artifact", "food", "food", "nature", "nature", "person", "person", "nature", "nature",
        "artifact",
    ]  # fmt: skip
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match="not an ImageNet-1k class; allowed: 0..999"):
            manifest.imagenet_group(bad)


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("n01440764_tench.JPEG", "n01440764_tench"),
        ("n03590841_jack-o'-lantern.JPEG", "n03590841_jack-o-lantern"),
        ("n02966687_carpenter's_kit.JPEG", "n02966687_carpenters_kit"),
        ("a b+c.png", "a_b_c"),
        ("noext", "noext"),
    ],
)
def test_image_id(file: str, expected: str) -> None:
    assert manifest.image_id(file) == expected


def test_config_from_manifest(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + row() + row("n02_jack-o'-lantern.JPEG", "607") + "\n")
    config = manifest.config_from_manifest(path, base=BASE, run="small", knobs=["first", "nonzero_mean"])
    assert list(config) == list(BASE)  # base's key order, run first
    assert config["run"] == "small" and config["knobs"] == ["first", "nonzero_mean"]
    assert config["chains"] == BASE["chains"]  # which need nonzero_mean among the knobs
    assert config["images"] == [
        {"id": "n01_tench", "source": URL + "n01_tench.JPEG", "sha256": SHA, "target": 0, "group": "animal"},
        {"id": "n02_jack-o-lantern", "source": URL + "n02_jack-o'-lantern.JPEG", "sha256": SHA, "target": 607,
         "group": "artifact"},
    ]  # fmt: skip
    plain = manifest.config_from_manifest(path, base={"model": {"name": "bvlc_alexnet"}}, groups=None)
    assert list(plain) == ["model", "images"] and "group" not in plain["images"][0]
    schema.check_schema(config, SCHEMA)
    text = manifest.to_yaml(config, comment="# hi\n")
    assert text.startswith("# hi\nrun: small\nmodel:\n  name: bvlc_alexnet\n")
    assert yaml.safe_load(text) == config  # the quoted URL with its apostrophe reads back as it was


def test_main_writes_a_valid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, HEADER + row() + row("n02_goldfish.JPEG", "1"))
    out = tmp_path / "two.yaml"
    assert manifest.main([str(path), "--base", str(REPO / "config" / "imagenet16.yaml"), "--out", str(out)]) == 0
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert config["run"] == "two" and len(config["images"]) == 2
    schema.check_schema(config, SCHEMA)
    configcheck.check_config(config, cuda_available=False, files=False)
    # 2 images x 3 (fetch_image, image, figures) + 7 (2 fetches, the conversion, tables, 2 notebooks, all)
    assert "plans about 13 jobs" in out.read_text(encoding="utf-8")
    assert manifest.main([str(tmp_path / "nope.tsv"), "--base", str(REPO / "config" / "imagenet16.yaml"),
                          "--out", str(out)]) == 2  # fmt: skip
    assert "nope.tsv" in capsys.readouterr().err


MALFORMED = {
    "empty": ("", "empty manifest; expected a tab-separated header line"),
    "missing_column": (
        "file\tclass_index\turl\n",
        "missing column sha256; the header has 'file', 'class_index', 'url'",
    ),
    "missing_columns": ("file\tlabel\n", "missing columns class_index, sha256, url"),
    "no_rows": (HEADER, "no images below the header"),
    "short_row": (HEADER + "a.JPEG\t0\n", "line 2: 2 tab-separated fields, but the header has 7"),
    "bad_sha256": (HEADER + row(sha256="ABC"), "line 2: sha256 'ABC' is not 64 lowercase hexadecimal digits"),
    "upper_sha256": (HEADER + row(sha256="AB" * 32), "is not 64 lowercase hexadecimal digits"),
    "non_integer_class": (
        HEADER + row(class_index="7.5"),
        "line 2: class_index '7.5' is not an integer; expected 0..999",
    ),
    "class_too_big": (HEADER + row(class_index="1000"), "line 2: class_index 1000 is out of range; expected 0..999"),
    "class_negative": (HEADER + row(class_index="-1"), "line 2: class_index -1 is out of range"),
    "duplicate_id": (
        HEADER + row() + row(class_index="1") + row("n01_tench.png", "2"),
        "line 3: file 'n01_tench.JPEG' gives the image id 'n01_tench', which line 2 gives too",
    ),
    "bad_url": (HEADER + row(url="ftp://x/y.JPEG"), "line 2: url 'ftp://x/y.JPEG' is not an http(s):// or file:// URL"),
    "unsafe_id": (HEADER + row("..JPEG"), "line 2: image id made from file '..JPEG'"),
    "underscore_class": (
        HEADER + row(class_index="1_0"),
        "line 2: class_index '1_0' is not an integer; expected 0..999",
    ),
    "plus_class": (HEADER + row(class_index="+7"), "line 2: class_index '+7' is not an integer"),
    "arabic_digits_class": (
        HEADER + row(class_index="\u0661\u0660"),
        "line 2: class_index '\u0661\u0660' is not an integer",
    ),
    "superscript_bytes": (
        HEADER + row().replace("\t123\t", "\t\u00b2\t"),
        "line 2: bytes '\u00b2' is not a non-negative integer",
    ),
    "empty_file": (HEADER + row(file="", url=URL + "x.JPEG"), "line 2: column file is empty"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_manifest_is_a_clear_error(case: str, tmp_path: Path) -> None:
    text, message = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        manifest.read_manifest(path)
    assert str(info.value).startswith(str(path)), info.value
    assert message in str(info.value), info.value


# --- python -m ifmsan.workflow.manifest: what it writes, the workflow accepts ------------------------------------

MINI_BASE = "model: {name: alexnet_mini, weights: train}\nlayers: [pool5]\n"
"""A base config for a 10-class model."""


def run_main(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, manifest_text: str | None = None,
             base_text: str | None = MINI_BASE) -> tuple[int, str]:  # fmt: skip
    """main() on a two-row manifest (classes 5 and 3) and a base written into tmp_path; (exit code, stderr)."""
    path = write(tmp_path, manifest_text or HEADER + row(class_index="5") + row("n02_goldfish.JPEG", "3"))
    if base_text is not None:
        (tmp_path / "base.yaml").write_text(base_text, encoding="utf-8")
    defaults = {"--base": str(tmp_path / "base.yaml"), "--out": str(tmp_path / "out.yaml")}
    for option in args:
        defaults.pop(option, None)
    code = manifest.main([str(path), *[arg for pair in defaults.items() for arg in pair], *args])
    return code, capsys.readouterr().err


REFUSED = {
    "class_beyond_the_model": (
        [],
        HEADER + row(class_index="5") + row("n02_goldfish.JPEG", "500"),
        MINI_BASE,
        "MANIFEST.tsv line 3: images[1].target: 500 is not a class of the model; allowed: 0..9 or null",
    ),
    "unknown_knob": (["--knobs", "bogus"], None, MINI_BASE, "--knobs: knobs[0]: 'bogus' is not one of"),
    "run_with_a_parent_dir": (["--run", "../x"], None, MINI_BASE, "--run ../x: run: '../x'"),
    "run_from_out_name": (["--out", "OUT_DIR/my run.yaml"], None, MINI_BASE, "run 'my run' (from --out"),
    "unknown_base_key": ([], None, MINI_BASE + "bogus: 1\n", "base.yaml: config: unknown key 'bogus'"),
    "unknown_base_layer": (
        [],
        None,
        "model: {name: alexnet_mini, weights: train}\nlayers: [pool9]\n",
        "base.yaml: layers[0]: 'pool9' is not an IFM layer of alexnet_mini",
    ),  # fmt: skip
    "broken_base_yaml": ([], None, "model: {name: [\n", "base.yaml line 2: not valid YAML: expected the node content"),
    "base_yaml_alias": (
        [],
        None,
        MINI_BASE + "a: &x [1]\nb: *x\n",
        "base.yaml line 4: YAML alias *x; a config made from a manifest",
    ),
    "base_not_a_mapping": ([], None, "- 1\n- 2\n", "base.yaml: not a YAML mapping (a workflow config) but list"),
    "base_missing": (
        ["--base", "OUT_DIR/nope.yaml"],
        None,
        None,
        "--base OUT_DIR/nope.yaml: cannot read it: No such file",
    ),
    "base_is_a_directory": (["--base", "OUT_DIR"], None, None, "--base OUT_DIR is a directory"),
    "out_is_a_directory": (["--out", "OUT_DIR"], None, MINI_BASE, "--out OUT_DIR is a directory; expected the path"),
}
"""Inputs whose config the workflow would refuse (or that cannot be read): one clear error, exit 2, nothing written."""


@pytest.mark.parametrize("case", list(REFUSED))
def test_main_refuses_what_the_workflow_would_refuse(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, manifest_text, base_text, message = REFUSED[case]
    args = [arg.replace("OUT_DIR", str(tmp_path)) for arg in args]
    before = sorted(tmp_path.rglob("*"))
    code, err = run_main(tmp_path, capsys, *args, manifest_text=manifest_text, base_text=base_text)
    assert code == 2, err
    assert err.startswith("python -m ifmsan.workflow.manifest: error: ") and "Traceback" not in err
    assert message.replace("OUT_DIR", str(tmp_path)) in err, err
    after = sorted(tmp_path.rglob("*"))
    assert [p for p in after if p not in before and p.name not in ("MANIFEST.tsv", "base.yaml")] == []


def test_main_names_each_problem_with_its_manifest_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = HEADER + row(class_index="5") + "\n" + row("n02_goldfish.JPEG", "11") + row("n03_x.JPEG", "12")
    code, err = run_main(tmp_path, capsys, "--groups", "none", manifest_text=text)
    assert code == 2 and "(2 problems)" in err
    assert "MANIFEST.tsv line 4: images[1].target: 11 is not a class" in err  # line 3 is blank
    assert "MANIFEST.tsv line 5: images[2].target: 12 is not a class" in err


def test_main_writes_a_config_the_workflow_accepts_for_a_small_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(tmp_path, capsys, "--groups", "none")
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "out.yaml").read_text(encoding="utf-8"))
    assert config["run"] == "out" and [image["target"] for image in config["images"]] == [5, 3]
    schema.check_schema(config, SCHEMA)
    configcheck.check_config(schema.with_defaults(config, SCHEMA), files=False)


def test_python_m_runs_the_documented_module(tmp_path: Path) -> None:
    """The module path the config headers and docs give is the one that runs (there is no ifmsan.manifest)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ifmsan.workflow.manifest", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--base" in result.stdout
    documented = {
        line.split("python -m ")[1].split()[0] for line in CONFIG_FILE.read_text().splitlines() if "python -m" in line
    }
    assert documented == {"ifmsan.workflow.manifest"}
