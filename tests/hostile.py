"""Hostile tries: bad inputs a hostile user gives the CLI, the workflow (DAG) and the files, each with its verdict.

Each try is a small object (id, kind, description, how to run it, expected outcome). Run them all with
`python tests/hostile.py [--only KIND] [--json OUT]` (a table of verdicts and the counts per verdict), or as
`tests/test_hostile.py` (one pytest test per try, which asserts the verdict is clean or correct).

Verdicts:
- clean: refused as expected (exit 2 for the CLI, non-zero for the DAG, an exception the library documents) with a
  one-line message holding every fragment, no traceback, nothing left in the try's folder;
- correct: an ok-try that ran and whose check of the result passes;
- silent: expected a refusal but it ran to the end, or an ok-try whose check fails;
- traceback: a traceback in the output, an uncaught exception in process, or a CLI exit code other than 0 and 2;
- unclear: refused, but the message lacks a fragment, spans several lines, names what it must not, a valid input
  was refused, or the refusal left files behind;
- slow: over the try's time bound (a subprocess is killed there);
- broken: the harness could not prepare the try (a shared input failed to build).

CLI tries run in process (ifmsan.cli.main with stdout and stderr captured) unless they may exhaust memory or
threads: those run in a subprocess with an address-space limit and a timeout, as do the DAG tries (`snakemake -n`).
Shared inputs (one IFM file, sweeps, attack files, converted weights) are built once per process, on first use, in a
temporary folder.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import io
import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
BIN = Path(sys.executable).parent
TINY_YAML = TESTS / "data" / "tiny.yaml"

VERDICTS = ("clean", "correct", "silent", "traceback", "unclear", "slow", "broken")
GOOD = ("clean", "correct")
KINDS = ("cli", "dag", "file", "library")
MEMORY_LIMIT = 8 << 30
"""Address-space limit of a subprocess try: a run that would need more fails there instead of swapping the machine."""
BVLC_SHA1 = "9116a64c0fbe4459d18f4bb6b56d647b63920377"
"""The sha1 of BVLC's real bvlc_alexnet.caffemodel (config/config.yaml): what a forger writes into a header."""
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
OK_DAG_ERRORS = {"ValueError", "WorkflowError", "KeyError", "OSError", "FileNotFoundError", "InputFunctionException"}
DAG_ERROR = re.compile(r"^(\w+) in (?:file|line)\b", re.MULTILINE)


# --- the shared inputs ------------------------------------------------------------------------------------------


class Shared:
    """Inputs many tries read, built on first use in one temporary folder (removed at exit)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ifmsan-hostile-"))
        atexit.register(shutil.rmtree, self.root, True)

    def __getitem__(self, name: str) -> str:
        """A shared path by name, for the {name} fields of a try's command line."""
        return str(getattr(self, name))

    def _cli(self, *words: str) -> None:
        from ifmsan.cli import main

        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(list(words))
        if code != 0:
            raise RuntimeError(f"building a shared input: ifmsan {' '.join(words)} exited {code}: {err.getvalue()}")

    def _extract(self, name: str, index: int, config_hash: str) -> Path:
        out = self.root / f"{name}.nc"
        self._cli("extract", "--model", "alexnet_mini", "--threads", "1", "--image", f"minidata:test:{index}",
                  "--image-id", f"t{index}", "--attr", f"config_hash={config_hash}", "--out", str(out))  # fmt: skip
        return out

    def _sweep(self, name: str, ifms: Path, layer: str, values: str, config_hash: str, knob: str = "nonzero_mean"):
        out = self.root / f"{name}.nc"
        self._cli("sweep", "--model", "alexnet_mini", "--threads", "1", "--ifms", str(ifms), "--layer", layer,
                  "--knob", knob, "--values", values, "--attr", f"config_hash={config_hash}", "--out", str(out))  # fmt: skip
        return out

    def _attack(self, name: str, layer: str, n_train: int, config_hash: str) -> Path:
        out = self.root / f"{name}.nc"
        self._cli("attack", "--model", "alexnet_mini", "--layer", layer, "--knob", "nonzero_mean", "--values", "8",
                  *tiny_attack(n_train=n_train), "--attr", f"config_hash={config_hash}", "--out", str(out))  # fmt: skip
        return out

    @functools.cached_property
    def ifms(self) -> Path:
        """IFMs of minidata:test:0 (alexnet_mini, seeded weights), config_hash abc."""
        return self._extract("ifms", 0, "abc")

    @functools.cached_property
    def ifms1(self) -> Path:
        return self._extract("ifms1", 1, "abc")

    @functools.cached_property
    def ifms1_xyz(self) -> Path:
        """IFMs of minidata:test:1 extracted under another configuration (config_hash xyz)."""
        return self._extract("ifms1_xyz", 1, "xyz")

    @functools.cached_property
    def sweep(self) -> Path:
        """pool5, nonzero_mean, windows 2..12 of `ifms`."""
        return self._sweep("sweep", self.ifms, "pool5", "2:12", "abc")

    @functools.cached_property
    def sweep1(self) -> Path:
        return self._sweep("sweep1", self.ifms1, "pool5", "2:12", "abc")

    @functools.cached_property
    def conv3_t0(self) -> Path:
        return self._sweep("conv3_t0", self.ifms, "conv3", "2:40:4", "abc")

    @functools.cached_property
    def conv3_t1_xyz(self) -> Path:
        """conv3 sweep of another image, made under another configuration (config_hash xyz)."""
        return self._sweep("conv3_t1_xyz", self.ifms1_xyz, "conv3", "2:40:4", "xyz")

    @functools.cached_property
    def attack_a(self) -> Path:
        return self._attack("attack_a", "conv3", 8, "abc")

    @functools.cached_property
    def attack_b(self) -> Path:
        return self._attack("attack_b", "pool5", 8, "abc")

    @functools.cached_property
    def attack_c(self) -> Path:
        """pool5 like attack_b, but with other attack options (n_train 10)."""
        return self._attack("attack_c", "pool5", 10, "abc")

    @functools.cached_property
    def calibration(self) -> Path:
        """conv3's calibration over 2 images (`ifmsan calibrate`)."""
        out = self.root / "calibration.json"
        self._cli("calibrate", "--model", "alexnet_mini", "--threads", "1", "--layer", "conv3", "--n-images", "2",
                  "--out", str(out))  # fmt: skip
        return out

    @functools.cached_property
    def npy(self) -> Path:
        import numpy as np

        path = self.root / "ifm.npy"
        np.save(path, np.random.default_rng(0).random((4, 6, 6), dtype=np.float32))
        return path

    @functools.cached_property
    def image(self) -> Path:
        import numpy as np
        from PIL import Image

        path = self.root / "img.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path)
        return path

    @functools.cached_property
    def mini_pt(self) -> Path:
        """alexnet_mini's seeded state dict saved with torch.save: a well-formed weights file."""
        import torch

        from ifmsan import models

        path = self.root / "mini.pt"
        torch.save(models.load("alexnet_mini").state_dict(), path)
        return path

    @functools.cached_property
    def caffemodel(self) -> Path:
        """A full-size V1 caffemodel of random BVLC AlexNet weights (tests/caffemodel_writer.py)."""
        from caffemodel_writer import bvlc_random_blobs, write_caffemodel

        return write_caffemodel(self.root / "bvlc_alexnet.caffemodel", bvlc_random_blobs(7), form="v1")

    @functools.cached_property
    def caffemodel_sha1(self) -> str:
        import hashlib

        return hashlib.sha1(self.caffemodel.read_bytes()).hexdigest()

    @functools.cached_property
    def converted(self) -> Path:
        """`caffemodel` converted by `ifmsan convert-weights`."""
        out = self.root / "bvlc_alexnet.safetensors"
        self._cli("convert-weights", str(self.caffemodel), "--out", str(out), "--sha1", self.caffemodel_sha1)
        return out


def tiny_attack(*, n_train: int = 8) -> list[str]:
    """Options of an attack that takes seconds."""
    return ["--threads", "1", "--n-train", str(n_train), "--n-test", "4", "--epochs-adaptive", "1",
            "--epochs-inversion", "1", "--epochs-attribute", "1", "--resolution", "32", "--batch-size", "8",
            "--n-examples", "1"]  # fmt: skip


# --- file makers: each writes a hostile file into the try's folder and returns {name: path} ----------------------

Maker = Callable[[Shared, Path], Mapping[str, str]]


def nc_variant(source: str, name: str = "bad.nc", *, edit: Callable[[Any], Any] | None = None, **attrs: Any) -> Maker:
    """A copy of a shared NetCDF file with attributes set and/or `edit(dataset)` applied."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        from ifmsan.steps import io as ifmsan_io

        dataset = ifmsan_io.read_netcdf(getattr(shared, source)).load()
        dataset.attrs.update(attrs)
        if edit is not None:
            dataset = edit(dataset) or dataset
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        ifmsan_io.write_netcdf(dataset, path)
        return {"bad": str(path)}

    return make


def set_var(variable: str, value: float, **where: Any) -> Callable[[Any], None]:
    """An edit that sets one variable (or the cells `where` selects) to a value."""

    def edit(dataset: Any) -> None:
        if where:
            dataset[variable].loc[where] = value
        else:
            dataset[variable].values[...] = value

    return edit


def set_first(variable: str, value: float) -> Callable[[Any], None]:
    def edit(dataset: Any) -> None:
        dataset[variable].values.flat[0] = value

    return edit


def truncated(source: str, fraction: float = 0.5, name: str = "cut.nc") -> Maker:
    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        data = Path(getattr(shared, source)).read_bytes()
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data[: int(len(data) * fraction)])
        return {"bad": str(path)}

    return make


def copied(source: str, name: str) -> Maker:
    """A shared file copied under another name (e.g. a caffemodel named .safetensors)."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        shutil.copyfile(getattr(shared, source), path)
        return {"bad": str(path)}

    return make


def text_file(name: str, text: str | bytes) -> Maker:
    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return {"bad": str(path)}

    return make


def json_variant(source: str, name: str = "c.json", *, raw: str | None = None, **changes: Any) -> Maker:
    """A shared JSON file with keys changed (NaN written as JSON's NaN), or `raw` text in its place."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        record = json.loads(Path(getattr(shared, source)).read_text())
        record.update(changes)
        path.write_text(raw if raw is not None else json.dumps(record))
        return {"bad": str(path)}

    return make


def folder(name: str = "adir") -> Maker:
    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        path = tmp / "in" / name
        path.mkdir(parents=True)
        (path / "keep").write_text("x")
        return {"bad": str(path)}

    return make


def out_folder(name: str) -> Maker:
    """An existing folder where a verb expects to write a file (it holds one file, so it is not empty)."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        path = tmp / "in" / name
        path.mkdir(parents=True)
        (path / "keep").write_text("x")
        return {"dirout": str(path)}

    return make


def state_dict_file(change: Callable[[dict], Any], name: str = "w.pt") -> Maker:
    """alexnet_mini's state dict with `change(state)` applied, saved with torch.save."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        import torch

        from ifmsan import models

        state = dict(models.load("alexnet_mini").state_dict())
        state = change(state) or state
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        torch.save(state, path)
        return {"bad": str(path)}

    return make


class Gadget:
    """A non-tensor object inside a pickle: torch's weights_only loader must refuse it."""

    def __reduce__(self):  # noqa: D105
        return (print, ("a pickled call ran",))


def pickled_gadget(name: str = "evil.pt") -> Maker:
    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        import torch

        from ifmsan import models

        state: dict[str, Any] = dict(models.load("alexnet_mini").state_dict())
        state["conv1.weight"] = Gadget()
        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        torch.save(state, path)
        return {"bad": str(path)}

    return make


def forged_cache(shared: Shared, tmp: Path) -> Mapping[str, str]:
    """Weights with other bytes than a claimed sha256, and a hand-written `.verified` checksum cache vouching for it."""
    path = tmp / "in" / "mine.pt"
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(shared.mini_pt, path)
    claimed = "ab" * 32
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ino": stat.st_ino, "digests": {"sha256": claimed}}
    path.with_name(path.name + ".verified").write_text(json.dumps(record, sort_keys=True) + "\n")
    return {"bad": str(path), "claimed": claimed}


def safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """The length of a safetensors file's JSON header and the header itself."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return length, json.loads(handle.read(length))


def edited_converted(*, sha1: str | None = None, sha256: str | None = None, flip_tensor_byte: bool = False) -> Maker:
    """A copy of the converted weights with the header's recorded sums replaced (same length) or one tensor byte
    flipped: what a forger does to make random weights pass as BVLC's."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        source = shared.converted
        path = tmp / "in" / "edited.safetensors"
        path.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, path)
        length, header = safetensors_header(path)
        with path.open("r+b") as handle:
            if sha1 or sha256:
                handle.seek(8)
                raw = bytearray(handle.read(length))
                meta = header["__metadata__"]
                for key, new in (("caffemodel_sha1", sha1), ("caffemodel_sha256", sha256)):
                    if new:
                        old = meta[key].encode()
                        at = raw.find(old)
                        raw[at : at + len(old)] = new.encode()
                handle.seek(8)
                handle.write(bytes(raw))
            if flip_tensor_byte:
                where = 8 + length + header["fc7.weight"]["data_offsets"][0] + 1001
                handle.seek(where)
                byte = handle.read(1)
                handle.seek(where)
                handle.write(bytes([byte[0] ^ 0x40]))
        return {"bad": str(path)}

    return make


def cut_converted(shared: Shared, tmp: Path) -> Mapping[str, str]:
    path = tmp / "in" / "cut.safetensors"
    path.parent.mkdir(exist_ok=True)
    with shared.converted.open("rb") as handle:
        path.write_bytes(handle.read(4096))
    return {"bad": str(path)}


def cut_caffemodel(shared: Shared, tmp: Path) -> Mapping[str, str]:
    path = tmp / "in" / "cut.caffemodel"
    path.parent.mkdir(exist_ok=True)
    with shared.caffemodel.open("rb") as handle:
        path.write_bytes(handle.read(1 << 20))
    return {"bad": str(path)}


def npy_file(make_array: Callable[[], Any], name: str = "bad.npy", *, allow_pickle: bool = False) -> Maker:
    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        import numpy as np

        path = tmp / "in" / name
        path.parent.mkdir(exist_ok=True)
        np.save(path, make_array(), allow_pickle=allow_pickle)
        return {"bad": str(path)}

    return make


def both(*makers: Maker) -> Maker:
    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        found: dict[str, str] = {}
        for maker in makers:
            found.update(maker(shared, tmp))
        return found

    return make


def renamed(maker: Maker, key: str) -> Maker:
    """The maker's "bad" path under another field name (for tries that need two made files)."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        return {key: maker(shared, tmp)["bad"]}

    return make


# --- manifests and configs --------------------------------------------------------------------------------------

MANIFEST_HEADER = "file\tclass_index\twnid\tlabel\tsha256\tbytes\turl\n"


def manifest_row(file: str = "n01_tench.JPEG", class_index: str = "0", sha256: str = "ab" * 32) -> str:
    return "\t".join([file, class_index, "n01", "tench", sha256, "123", "https://example.org/i/" + file]) + "\n"


def manifest_files(rows: str, *, header: str = MANIFEST_HEADER, base: str | None = None) -> Maker:
    """MANIFEST.tsv and a base config (tiny.yaml unless `base` text is given) in the try's folder."""

    def make(shared: Shared, tmp: Path) -> Mapping[str, str]:
        folder_in = tmp / "in"
        folder_in.mkdir(exist_ok=True)
        (folder_in / "MANIFEST.tsv").write_text(header + rows, encoding="utf-8")
        (folder_in / "base.yaml").write_text(TINY_YAML.read_text() if base is None else base, encoding="utf-8")
        return {"manifest": str(folder_in / "MANIFEST.tsv"), "base": str(folder_in / "base.yaml")}

    return make


def alias_bomb(levels: int = 9) -> str:
    """A YAML 'billion laughs': each level lists the previous one nine times (9**levels leaves)."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def tiny_config() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(TINY_YAML.read_text())


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """config[a][b][0]... = value for the dotted key a.b.0 (a key is removed for the value DELETE)."""
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    node: Any = config
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


# --- tries ------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a try did: exit code (None: an uncaught exception), captured text, seconds, files it left."""

    code: int | None
    out: str
    seconds: float
    left: list[str] = field(default_factory=list)
    exception: str = ""
    timed_out: bool = False
    value: Any = None


@dataclass(frozen=True)
class Try:
    """One hostile try.

    run: "cli" (in process), "cli-sub" (a subprocess), "manifest" (python -m ifmsan.workflow.manifest, in process),
    "dag" (snakemake -n in a subprocess) or "library" (call(shared, tmp) in process). argv: the command's words, with
    {tmp}, {name} fields filled from the try's folder, the made files and the shared inputs.
    expect: "refuse" (fragments: each must be in the message, `a|b` for either; forbidden: none may be), "ok"
    (check(shared, tmp, outcome) returns None or what is wrong), or "either" (a clean refusal or a correct result).
    """

    id: str
    kind: str
    about: str
    run: str
    expect: str
    argv: str = ""
    fragments: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    make: Maker | None = None
    check: Callable[[Shared, Path, Outcome], str | None] | None = None
    call: Callable[[Shared, Path], Any] | None = None
    config: Callable[[dict[str, Any]], Any] | str | None = None
    bound_s: float = 60.0
    finding: bool = False
    file_limit: int | None = None
    """cli-sub only: RLIMIT_FSIZE in bytes, so that writing the output fails as on a full disk (EFBIG)."""


def fill(words: str, fields: Mapping[str, str] | Callable[[str], str]) -> list[str]:
    lookup = fields if callable(fields) else fields.__getitem__
    return [re.sub(r"\{(\w+)\}", lambda m: lookup(m.group(1)), word) for word in shlex.split(words)]


T: list[Try] = []


def add(id: str, kind: str, about: str, run: str, expect: str, **options: Any) -> None:
    if "fragments" in options:
        options["fragments"] = tuple(options["fragments"])
    if "forbidden" in options:
        options["forbidden"] = tuple(options["forbidden"])
    T.append(Try(id=id, kind=kind, about=about, run=run, expect=expect, **options))


def refuse(id: str, kind: str, about: str, argv: str, fragments: Sequence[str], *, run: str = "cli", **kw: Any) -> None:
    add(id, kind, about, run, "refuse", argv=argv, fragments=fragments, **kw)


EXTRACT = "extract --model alexnet_mini --threads 1 --image minidata:test:0 --image-id t0 --out {tmp}/o.nc"
SWEEP = "sweep --model alexnet_mini --threads 1 --ifms {ifms} --layer pool5 --values 2:6 --out {tmp}/o.nc"
GAMMA = "gamma --model alexnet_mini --threads 1 --ifms {ifms} --layers pool5 --values 2:12 --out {tmp}/o.csv"
REPORT = "report --sweeps {sweep} --out-dir {tmp}/rep"
ATTACK = "attack --model alexnet_mini --layer conv3 --knob nonzero_mean --values 8 " + " ".join(tiny_attack())
ATTACK_OUT = " --out {tmp}/a.nc"
AREPORT = "attack-report --tables-dir {tmp}/t --figures-dir {tmp}/f --attacks"
SANITIZE = "sanitize {npy} {tmp}/o.npy"
CALIBRATE = "calibrate --model alexnet_mini --threads 1 --layer pool5 --out {tmp}/c.json"
CERTIFY = ("certify --model alexnet_mini --threads 1 --image minidata:test:0 --image-id t0 --layer conv2 "
           "--windows 4 --out {tmp}/m.nc")  # fmt: skip
FETCH = "fetch file://{npy} {tmp}/got.npy"
TRAIN = "train-mini --out {tmp}/mini --epochs 1 --train-per-class 3 --test-per-class 2"
MANIFEST = "{manifest} --base {base} --out {tmp}/out.yaml"

# ---- extract: numbers, images, ids ----
for suffix, value, frags in [
    ("0", "0", ["--threads"]), ("neg", "-3", ["--threads"]), ("float", "1.5", ["--threads"]),
    ("underscore", "1_0", ["--threads"]), ("nan", "nan", ["--threads"]),
]:  # fmt: skip
    refuse(f"extract-threads-{suffix}", "cli", f"extract --threads {value}", EXTRACT + f" --threads={value}", frags)
refuse("extract-threads-huge", "cli", "extract --threads 10**6 (dies of MemoryError or spawns a million threads)",
       EXTRACT + " --threads 1000000", ["--threads"], run="cli-sub", bound_s=60, finding=True)  # fmt: skip
refuse("extract-init-seed-neg", "cli", "extract --init-seed -1", EXTRACT + " --init-seed=-1", ["--init-seed"])
refuse("extract-init-seed-huge", "cli", "extract --init-seed 10**30 (past torch.manual_seed's 64 bits)",
       EXTRACT + " --init-seed 1000000000000000000000000000000", ["--init-seed"])  # fmt: skip
refuse("extract-init-seed-1e308", "cli", "extract --init-seed 1e308", EXTRACT + " --init-seed 1e308", ["--init-seed"])
refuse("extract-target-neg", "cli", "extract --target -1", EXTRACT + " --target=-1", ["--target"])
refuse("extract-target-10", "cli", "extract --target 10 on a 10-class model", EXTRACT + " --target 10", ["--target"])
refuse("extract-target-float", "cli", "extract --target 2.5", EXTRACT + " --target 2.5", ["--target"])
refuse("extract-target-huge", "cli", "extract --target 10**20", EXTRACT + " --target 100000000000000000000",
       ["--target"])  # fmt: skip
refuse("extract-image-id-dotdot", "cli", "extract --image-id ../x",
       EXTRACT.replace("--image-id t0", "--image-id ../x"), ["--image-id|image id"])  # fmt: skip
refuse("extract-image-missing", "file", "extract --image of a file that does not exist",
       EXTRACT.replace("minidata:test:0", "{tmp}/nope.png"), ["nope.png"])  # fmt: skip
refuse("extract-image-dir", "file", "extract --image of a directory", EXTRACT.replace("minidata:test:0", "{bad}"),
       ["adir"], make=folder())  # fmt: skip
refuse("extract-image-empty", "file", "extract --image of an empty .png", EXTRACT.replace("minidata:test:0", "{bad}"),
       ["empty.png"], make=text_file("empty.png", b""))  # fmt: skip
refuse("extract-image-nc", "file", "extract --image of a NetCDF file", EXTRACT.replace("minidata:test:0", "{sweep}"),
       ["sweep.nc"])  # fmt: skip
refuse("extract-minidata-huge", "cli", "extract --image minidata:test:10**12",
       EXTRACT.replace("minidata:test:0", "minidata:test:1000000000000"), ["minidata:test:1000000000000"])  # fmt: skip
refuse("extract-minidata-neg", "cli", "extract --image minidata:test:-1",
       EXTRACT.replace("minidata:test:0", "minidata:test:-1"), ["minidata:test:-1"])  # fmt: skip
refuse("extract-out-dir", "file", "extract --out of an existing directory",
       EXTRACT.replace("{tmp}/o.nc", "{dirout}"), ["--out"], make=out_folder("out.nc"))  # fmt: skip
refuse("extract-timm-bogus-tag", "cli", "extract --model timm:resnet18.bogus_tag (timm's traceback)",
       EXTRACT.replace("alexnet_mini", "timm:resnet18.bogus_tag"), ["bogus_tag"], finding=True)  # fmt: skip
refuse("extract-model-empty", "cli", "extract --model ''", EXTRACT.replace("alexnet_mini", "''"), ["--model|model"])

# ---- weights files ----
refuse("weights-pickle-gadget", "file", "extract --weights: a pickle whose state dict holds a callable object",
       EXTRACT + " --weights {bad}", ["evil.pt"], forbidden=["weights_only=False"], make=pickled_gadget(),
       finding=True)  # fmt: skip
refuse("weights-wrong-shape", "file", "extract --weights: conv1.weight of another shape", EXTRACT + " --weights {bad}",
       ["w.pt", "conv1.weight"], make=state_dict_file(lambda s: s.__setitem__("conv1.weight", s["conv1.weight"][:, :2])))  # fmt: skip
refuse("weights-extra-key", "file", "extract --weights: a state dict with an extra key", EXTRACT + " --weights {bad}",
       ["w.pt", "bogus"], make=state_dict_file(lambda s: s.__setitem__("bogus", s["fc8.bias"])))  # fmt: skip
refuse("weights-int-tensor", "file", "extract --weights: fc8.bias stored as int64", EXTRACT + " --weights {bad}",
       ["w.pt", "fc8.bias"], make=state_dict_file(lambda s: s.__setitem__("fc8.bias", s["fc8.bias"].long())))  # fmt: skip
refuse("weights-list", "file", "extract --weights: a .pt holding a list of tensors", EXTRACT + " --weights {bad}",
       ["w.pt"], make=state_dict_file(lambda s: list(s.values())))  # fmt: skip
refuse("weights-empty", "file", "extract --weights: an empty .pt", EXTRACT + " --weights {bad}", ["empty.pt"],
       make=text_file("empty.pt", b""))  # fmt: skip
refuse("weights-dir", "file", "extract --weights: a directory", EXTRACT + " --weights {bad}", ["adir"], make=folder())
refuse("weights-cache-forged", "file", "extract --weights-sha256 X with a hand-written .verified cache claiming X",
       EXTRACT + " --weights {bad} --weights-sha256 {claimed}", ["mine.pt"], make=forged_cache, finding=True)  # fmt: skip
BVLC = "extract --model bvlc_alexnet --threads 1 --image {image} --image-id t0 --out {tmp}/o.nc --weights "
refuse("converted-header-sha1-forged", "file",
       "converted .safetensors whose header claims BVLC's caffemodel sha1, given with --weights-sha1 of BVLC",
       BVLC + "{bad} --weights-sha1 " + BVLC_SHA1, ["edited.safetensors"], make=edited_converted(sha1=BVLC_SHA1),
       bound_s=120, finding=True)  # fmt: skip
refuse("converted-header-sha256-forged", "file", "converted file whose header's caffemodel_sha256 was replaced",
       BVLC + "{bad} --weights-sha256 " + "cd" * 32, ["edited.safetensors"], make=edited_converted(sha256="cd" * 32),
       bound_s=120, finding=True)  # fmt: skip
refuse("converted-tensor-byte", "file", "converted file with one fc7.weight byte flipped, given its true sha1",
       BVLC + "{bad} --weights-sha1 {caffemodel_sha1}", ["edited.safetensors"],
       make=edited_converted(flip_tensor_byte=True), bound_s=120, finding=True)  # fmt: skip
refuse("converted-truncated", "file", "converted file cut to 4 KiB", BVLC + "{bad} --weights-sha1 {caffemodel_sha1}",
       ["cut.safetensors"], make=cut_converted)  # fmt: skip
refuse("converted-as-mini", "file", "converted BVLC weights given to --model alexnet_mini",
       EXTRACT + " --weights {converted}", ["bvlc_alexnet.safetensors"], bound_s=120)  # fmt: skip
refuse("caffemodel-named-safetensors", "file", "a caffemodel renamed .safetensors (advice must not delete it)",
       BVLC + "{bad} --weights-sha1 {caffemodel_sha1}", ["w.safetensors"], forbidden=["delete"],
       make=copied("caffemodel", "w.safetensors"), bound_s=120, finding=True)  # fmt: skip


def check_converted_ok(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    import xarray as xr

    with xr.open_dataset(tmp / "o.nc") as ds:
        if ds.attrs.get("weights_sha") != shared.caffemodel_sha1:
            return f"weights_sha {ds.attrs.get('weights_sha')!r}, expected the caffemodel's sha1"
    return None


add("converted-genuine", "file", "the genuine converted file with its caffemodel's sha1 (control)", "cli", "ok",
    argv=BVLC + "{converted} --weights-sha1 {caffemodel_sha1}", check=check_converted_ok, bound_s=120)  # fmt: skip


refuse("sweep-init-seed-mismatch", "cli", "sweep --init-seed 1 of IFMs extracted with random weights of seed 0",
       SWEEP + " --init-seed 1", ["ifms.nc", "seed 0", "seed 1"], forbidden=["''"], finding=True)  # fmt: skip
refuse("gamma-init-seed-mismatch", "cli", "gamma --init-seed 1 of IFMs extracted with random weights of seed 0",
       GAMMA + " --gammas 1 --init-seed 1", ["ifms.nc", "seed 0", "seed 1"], forbidden=["''"], finding=True)  # fmt: skip
refuse("attack-init-seed-mismatch", "cli", "attack --init-seed 1 --sweeps of random weights of seed 0",
       "attack --model alexnet_mini --layer conv3 --knob nonzero_mean --values 8 --init-seed 1 --gammas 1 --sweeps "
       "{conv3_t0} " + " ".join(tiny_attack()) + " --out {tmp}/a.nc", ["conv3_t0.nc", "seed"], forbidden=["''"],
       finding=True)  # fmt: skip

# ---- convert-weights ----
refuse("convert-weights-dir", "file", "convert-weights of a directory", "convert-weights {bad} --out {tmp}/w.safetensors",
       ["adir"], make=folder())  # fmt: skip
refuse("convert-weights-truncated", "file", "convert-weights of a caffemodel cut to 1 MiB",
       "convert-weights {bad} --out {tmp}/w.safetensors", ["cut.caffemodel"], make=cut_caffemodel, bound_s=120)  # fmt: skip
refuse("convert-weights-pt", "file", "convert-weights of a PyTorch .pt", "convert-weights {mini_pt} --out {tmp}/w.safetensors",
       ["mini.pt"])  # fmt: skip
refuse("convert-weights-out-dir", "file", "convert-weights --out an existing directory named x.safetensors",
       "convert-weights {caffemodel} --out {dirout}", ["--out|x.safetensors"], make=out_folder("x.safetensors"),
       bound_s=120)  # fmt: skip

# ---- sweep ----
refuse("sweep-values-huge-range", "cli", "sweep --values 2:10**12 (a trillion windows)",
       SWEEP.replace("2:6", "2:1000000000000"), ["--values"], run="cli-sub", bound_s=60)  # fmt: skip
refuse("sweep-values-1e308", "cli", "sweep --values 2:1e308", SWEEP.replace("2:6", "2:1e308"), ["--values"])
refuse("sweep-values-nan", "cli", "sweep --values nan", SWEEP.replace("2:6", "nan"), ["--values"])
refuse("sweep-values-underscore", "cli", "sweep --values 2,1_0", SWEEP.replace("2:6", "2,1_0"), ["--values"])
refuse("sweep-scales-1e308", "cli", "sweep --knob laplace --scales 0,1e308 ('the weights overflow')",
       SWEEP.replace("--values 2:6", "--knob laplace --scales 0,1e308"), ["--scales"], finding=True)  # fmt: skip
refuse("sweep-scales-inf", "cli", "sweep --knob gaussian --scales inf",
       SWEEP.replace("--values 2:6", "--knob gaussian --scales inf"), ["--scales"])  # fmt: skip
refuse("sweep-seed-neg", "cli", "sweep --seed -1", SWEEP + " --seed=-1", ["--seed"])
refuse("sweep-seed-huge", "cli", "sweep --knob random --seed 10**30", SWEEP + " --knob random --seed " + "1" + "0" * 30,
       ["--seed"])  # fmt: skip
refuse("sweep-batch-size-neg", "cli", "sweep --batch-size -1", SWEEP + " --batch-size=-1", ["--batch-size"])
refuse("sweep-batch-size-huge", "cli", "sweep --batch-size 10**12", SWEEP + " --batch-size 1000000000000",
       ["--batch-size"], run="cli-sub", bound_s=60)  # fmt: skip


def check_chain_one_window(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    """A window past conv2's 17496 values is one window over it: the same curve as conv2@17496."""
    import xarray as xr

    from ifmsan.cli import main as cli_main

    reference = tmp / "reference.nc"
    argv = fill(SWEEP.replace("{tmp}/o.nc", str(reference)) + " --chain conv2@17496", shared.__getitem__)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if cli_main(argv) != 0:
            return "the reference sweep with --chain conv2@17496 failed"
    with xr.open_dataset(tmp / "o.nc") as got, xr.open_dataset(reference) as expected:
        same = bool((got["probability"].values == expected["probability"].values).all())
    return None if same else "differs from the one-window chain conv2@17496"


add("sweep-chain-window-huge", "cli", "sweep --chain conv2@10**20: one window over conv2, or a refusal", "cli",
    "either", argv=SWEEP + " --chain conv2@100000000000000000000", fragments=("--chain",),
    check=check_chain_one_window)  # fmt: skip
refuse("sweep-ifms-missing", "file", "sweep --ifms of a missing file", SWEEP.replace("{ifms}", "{tmp}/gone.nc"),
       ["gone.nc"])  # fmt: skip
refuse("sweep-ifms-dir", "file", "sweep --ifms of a directory", SWEEP.replace("{ifms}", "{bad}"), ["adir"],
       make=folder())  # fmt: skip
refuse("sweep-ifms-empty", "file", "sweep --ifms of an empty file", SWEEP.replace("{ifms}", "{bad}"), ["empty.nc"],
       make=text_file("empty.nc", b""))  # fmt: skip
refuse("sweep-ifms-truncated", "file", "sweep --ifms of an IFM file cut in half", SWEEP.replace("{ifms}", "{bad}"),
       ["cut.nc"], make=truncated("ifms"))  # fmt: skip
refuse("sweep-ifms-attack-file", "file", "sweep --ifms of an attack file", SWEEP.replace("{ifms}", "{attack_a}"),
       ["attack_a.nc"])  # fmt: skip
refuse("sweep-ifms-p0-edited", "file", "sweep --ifms: IFM file whose p0 was edited to 0.99",
       SWEEP.replace("{ifms}", "{bad}"), ["bad.nc", "p0"], make=nc_variant("ifms", p0=0.99), finding=True)  # fmt: skip
refuse("sweep-ifms-layer-zeroed", "file", "sweep --ifms: IFM file with pool5 zeroed (p0 no longer its forward pass)",
       SWEEP.replace("{ifms}", "{bad}"), ["bad.nc", "p0"], make=nc_variant("ifms", edit=set_var("pool5", 0.0)),
       finding=True)  # fmt: skip
refuse("sweep-ifms-nan", "file", "sweep --ifms: IFM file with a NaN in pool5", SWEEP.replace("{ifms}", "{bad}"),
       ["bad.nc", "pool5"], make=nc_variant("ifms", edit=set_first("pool5", math.nan)))  # fmt: skip
refuse("sweep-ifms-model-edited", "file", "sweep --ifms: IFM file whose model attribute says bvlc_alexnet",
       SWEEP.replace("{ifms}", "{bad}"), ["bad.nc", "model"], make=nc_variant("ifms", model="bvlc_alexnet"))  # fmt: skip
refuse("sweep-ifms-target-neg", "file", "sweep --ifms: IFM file with target -1", SWEEP.replace("{ifms}", "{bad}"),
       ["bad.nc", "target"], make=nc_variant("ifms", target=-1))  # fmt: skip
refuse("sweep-ifms-p0-nan", "file", "sweep --ifms: IFM file with p0 NaN", SWEEP.replace("{ifms}", "{bad}"),
       ["bad.nc", "p0"], make=nc_variant("ifms", p0=math.nan))  # fmt: skip


def check_same_p0(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    import xarray as xr

    with xr.open_dataset(tmp / "o.nc") as made, xr.open_dataset(shared.sweep) as reference:
        p0, expected = float(made.attrs["p0"]), float(reference.attrs["p0"])
    return None if p0 == expected else f"p0 {p0}, expected {expected} (the IFMs' own forward pass)"


add("sweep-ifms-softmax-5", "file", "sweep --ifms: IFM file whose softmax holds 5.0: a refusal or the true p0",
    "cli", "either", argv=SWEEP.replace("{ifms}", "{bad}"), fragments=("bad.nc", "softmax"),
    make=nc_variant("ifms", edit=set_first("softmax", 5.0)), check=check_same_p0)  # fmt: skip

# ---- gamma ----
refuse("gamma-1024", "cli", "gamma --gammas 1024 (2.0**gamma overflows)", GAMMA + " --gammas 1024", ["--gammas"],
       finding=True)  # fmt: skip
refuse("gamma-1e308", "cli", "gamma --gammas 1e308", GAMMA + " --gammas 1e308", ["--gammas"], finding=True)
refuse("gamma-values-huge", "cli", "gamma --values 2:10**15", GAMMA.replace("2:12", "2:1000000000000000") +
       " --gammas 1", ["--values"], run="cli-sub", bound_s=60)  # fmt: skip
refuse("gamma-batch-size-0", "cli", "gamma --batch-size 0", GAMMA + " --gammas 1 --batch-size 0", ["--batch-size"])
refuse("gamma-ifms-truncated", "file", "gamma --ifms of an IFM file cut at 90 %", GAMMA.replace("{ifms}", "{bad}") +
       " --gammas 1", ["cut.nc"], make=truncated("ifms", 0.9))  # fmt: skip
refuse("gamma-sweeps-p0-edited", "file", "gamma --sweeps: a sweep whose p0 was edited", GAMMA + " --gammas 0.1 --sweeps {bad}",
       ["bad.nc", "p0"], make=nc_variant("sweep", p0=0.6))  # fmt: skip
refuse("gamma-ifms-layer-zeroed", "file", "gamma --ifms: IFM file with pool5 zeroed",
       GAMMA.replace("{ifms}", "{bad}") + " --gammas 1", ["bad.nc", "p0"],
       make=nc_variant("ifms", edit=set_var("pool5", 0.0)))  # fmt: skip

# ---- report ----
refuse("report-gammas-1024", "cli", "report --gammas 1024", REPORT + " --gammas 1024", ["--gammas"], finding=True)
refuse("report-gammas-1e308", "cli", "report --gammas 1e308", REPORT + " --gammas 1e308", ["--gammas"], finding=True)
refuse("report-decimals-huge", "cli", "report --decimals 10**12", REPORT + " --decimals 1000000000000", ["--decimals"])
refuse("report-decimals-float", "cli", "report --decimals 4.0", REPORT + " --decimals 4.0", ["--decimals"])
refuse("report-sweep-p0-5", "file", "report --sweeps: a sweep with p0 5.0", REPORT.replace("{sweep}", "{bad}"),
       ["bad.nc", "p0"], make=nc_variant("sweep", p0=5.0), finding=True)  # fmt: skip
refuse("report-sweep-probability-5", "file", "report --sweeps: a sweep whose probability holds 5.0",
       REPORT.replace("{sweep}", "{bad}"), ["bad.nc", "probability"],
       make=nc_variant("sweep", edit=set_first("probability", 5.0)), finding=True)  # fmt: skip
refuse("report-sweep-probability-nan", "file", "report --sweeps: a sweep whose probability holds NaN",
       REPORT.replace("{sweep}", "{bad}"), ["bad.nc", "probability"],
       make=nc_variant("sweep", edit=set_first("probability", math.nan)), finding=True)  # fmt: skip
refuse("report-sweep-probability-neg", "file", "report --sweeps: a sweep whose probability holds -0.5",
       REPORT.replace("{sweep}", "{bad}"), ["bad.nc", "probability"],
       make=nc_variant("sweep", edit=set_first("probability", -0.5)))  # fmt: skip
refuse("report-sweep-truncated", "file", "report --sweeps: a sweep cut in half", REPORT.replace("{sweep}", "{bad}"),
       ["cut.nc"], make=truncated("sweep"))  # fmt: skip
refuse("report-ifms-as-sweep", "file", "report --sweeps: an IFM file", REPORT.replace("{sweep}", "{ifms}"), ["ifms.nc"])
refuse("report-sweep-window-zero", "file", "report --sweeps: a sweep whose first window coordinate is 0",
       REPORT.replace("{sweep}", "{bad}"), ["bad.nc", "window"],
       make=nc_variant("sweep", edit=lambda d: d.assign_coords(window=[0, *d["window"].values[1:]])))  # fmt: skip
refuse("report-sweeps-two-configs", "file", "report --sweeps: two images' sweeps of different configurations",
       REPORT.replace("{sweep}", "{sweep} {bad}"), ["config_hash"], make=nc_variant("sweep1", config_hash="xyz"))  # fmt: skip

# ---- attack ----
refuse("attack-n-train-huge", "cli", "attack --n-train 10**12 (MemoryError)", ATTACK + " --n-train 1000000000000" +
       ATTACK_OUT, ["n-train|n_train"], run="cli-sub", bound_s=60, finding=True)  # fmt: skip
refuse("attack-n-train-float", "cli", "attack --n-train 20.0", ATTACK + " --n-train 20.0" + ATTACK_OUT,
       ["n-train|n_train"])  # fmt: skip
refuse("attack-n-test-0", "cli", "attack --n-test 0", ATTACK + " --n-test 0" + ATTACK_OUT, ["n-test|n_test"])
refuse("attack-resolution-8192", "cli", "attack --resolution 8192 (MemoryError)", ATTACK + " --resolution 8192" +
       ATTACK_OUT, ["resolution"], run="cli-sub", bound_s=60, finding=True)  # fmt: skip
refuse("attack-resolution-0", "cli", "attack --resolution 0", ATTACK + " --resolution 0" + ATTACK_OUT, ["resolution"])
refuse("attack-threads-huge", "cli", "attack --threads 10**6", ATTACK + " --threads 1000000" + ATTACK_OUT,
       ["threads"], run="cli-sub", bound_s=60, finding=True)  # fmt: skip
refuse("attack-epochs-neg", "cli", "attack --epochs-inversion -1", ATTACK + " --epochs-inversion=-1" + ATTACK_OUT,
       ["epochs-inversion|epochs_inversion"])  # fmt: skip
refuse("attack-epochs-huge", "cli", "attack --epochs-adaptive 10**9 (would train for ever)",
       ATTACK + " --epochs-adaptive 1000000000" + ATTACK_OUT, ["epochs-adaptive|epochs_adaptive"], run="cli-sub",
       bound_s=60)  # fmt: skip
refuse("attack-lr-huge", "cli", "attack --lr-adaptive 1e30 (the attack diverges)", ATTACK + " --lr-adaptive 1e30" +
       ATTACK_OUT, ["lr-adaptive|lr_adaptive"], finding=True)  # fmt: skip
refuse("attack-lr-nan", "cli", "attack --lr-attack nan", ATTACK + " --lr-attack nan" + ATTACK_OUT,
       ["lr-attack|lr_attack"])  # fmt: skip
refuse("attack-lr-zero", "cli", "attack --optimize-lr 0", ATTACK + " --optimize-lr 0" + ATTACK_OUT,
       ["optimize-lr|optimize_lr|lr"])  # fmt: skip


def check_no_examples(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    """--n-examples 0 asks for an attack file without example images; the figure of them then says so."""
    import xarray as xr

    with xr.open_dataset(tmp / "a.nc") as got:
        sizes = [got.sizes[d] for d in got.dims if "example" in str(d)]
    return None if sizes and set(sizes) == {0} else f"example dimensions {sizes}, expected all 0"


add("attack-n-examples-0", "cli", "attack --n-examples 0: a file without example images (the config needs >= 1)",
    "cli", "either", argv=ATTACK + " --n-examples 0" + ATTACK_OUT, fragments=("n-examples|n_examples",),
    check=check_no_examples, finding=True)  # fmt: skip
refuse("attack-n-examples-over-n-test", "cli", "attack --n-examples 50 with --n-test 4",
       ATTACK + " --n-examples 50" + ATTACK_OUT, ["n-examples|n_examples"])  # fmt: skip
refuse("attack-batch-size-0", "cli", "attack --batch-size 0", ATTACK + " --batch-size 0" + ATTACK_OUT,
       ["batch-size|batch_size"])  # fmt: skip
refuse("attack-gammas-1024", "cli", "attack --gammas 1024 --sweeps ...", ATTACK + " --gammas 1024 --sweeps {conv3_t0}" +
       ATTACK_OUT, ["--gammas"], finding=True)  # fmt: skip
refuse("attack-noise-1e308", "cli", "attack --knob laplace --values 1e308",
       ATTACK.replace("nonzero_mean --values 8", "laplace --values 1e308") + ATTACK_OUT, ["--values"])  # fmt: skip
refuse("attack-seed-neg", "cli", "attack --seed -1", ATTACK + " --seed=-1" + ATTACK_OUT, ["seed"])
refuse("attack-sweeps-two-configs", "file", "attack --sweeps of two configurations (config_hash abc and xyz)",
       ATTACK + " --gammas 1 --sweeps {conv3_t0} {conv3_t1_xyz}" + ATTACK_OUT, ["config_hash"], finding=True)  # fmt: skip
refuse("attack-sweeps-probability-nan", "file", "attack --sweeps: a conv3 sweep with a NaN probability",
       ATTACK + " --gammas 1 --sweeps {bad}" + ATTACK_OUT, ["bad.nc", "probability"],
       make=nc_variant("conv3_t0", edit=set_first("probability", math.nan)))  # fmt: skip
refuse("attack-sweeps-p0-2", "file", "attack --sweeps: a conv3 sweep with p0 2.0",
       ATTACK + " --gammas 1 --sweeps {bad}" + ATTACK_OUT, ["bad.nc", "p0"], make=nc_variant("conv3_t0", p0=2.0))  # fmt: skip
refuse("attack-out-dir", "file", "attack --out an existing directory named a.nc", ATTACK + " --out {dirout}",
       ["--out"], make=out_folder("a.nc"))  # fmt: skip

# ---- calibration files and image groups ----
LAPLACE = ATTACK.replace("nonzero_mean --values 8", "laplace --values 1") + ATTACK_OUT + " --calibration {bad}"
refuse("attack-calibration-std-nan", "file", "attack --calibration whose calibration_std is NaN", LAPLACE,
       ["c.json", "calibration_std"], make=json_variant("calibration", calibration_std=math.nan))  # fmt: skip
refuse("attack-calibration-std-neg", "file", "attack --calibration whose calibration_std is -1", LAPLACE,
       ["c.json", "calibration_std"], make=json_variant("calibration", calibration_std=-1.0))  # fmt: skip
refuse("attack-calibration-other-layer", "file", "attack at conv3 with a calibration of pool5", LAPLACE,
       ["c.json", "pool5"], make=json_variant("calibration", layer="pool5"))  # fmt: skip
refuse("attack-calibration-other-model", "file", "attack with a calibration of bvlc_alexnet", LAPLACE,
       ["c.json", "bvlc_alexnet"], make=json_variant("calibration", model="bvlc_alexnet"))  # fmt: skip
refuse("attack-calibration-truncated", "file", "attack --calibration of a JSON file cut short", LAPLACE, ["c.json"],
       make=json_variant("calibration", raw='{"calibration_mean": 0.37, "calibration_'))  # fmt: skip
refuse("attack-calibration-is-list", "file", "attack --calibration of a JSON list", LAPLACE, ["c.json"],
       make=json_variant("calibration", raw="[1, 2, 3]"))  # fmt: skip
refuse("report-image-groups-alias-bomb", "file", "report --image-groups of a YAML alias bomb",
       REPORT + " --image-groups {bad}", ["groups.yaml"], make=text_file("groups.yaml", alias_bomb()), bound_s=10)  # fmt: skip
refuse("attack-calibration-other-weights", "file", "attack with a calibration of random weights of init seed 5",
       LAPLACE, ["c.json", "seed 5"],
       make=json_variant("calibration", weights_source="seeded Kaiming-normal initialisation (seed 5)"))  # fmt: skip
refuse("report-image-groups-alias-value", "file", "report --image-groups whose group of t0 is an alias bomb (9**9 items)",
       REPORT + " --image-groups {bad}", ["groups.yaml", "t0"], run="cli-sub", bound_s=30,
       make=text_file("groups.yaml", "t0:\n" + "".join("  - " + x.split(": ", 1)[1] + "\n" for x in alias_bomb().splitlines())))  # fmt: skip
refuse("report-image-groups-config-alias", "file", "report --image-groups: a config whose image t0 has an alias bomb as group",
       REPORT + " --image-groups {bad}", ["groups.yaml", "group"], run="cli-sub", bound_s=15,
       make=text_file("groups.yaml", "bomb:\n" + "".join("  " + x + "\n" for x in alias_bomb().splitlines())
                      + "images:\n  - {id: t0, group: *a9}\n"))  # fmt: skip
refuse("report-image-groups-broken", "file", "report --image-groups of broken YAML", REPORT + " --image-groups {bad}",
       ["groups.yaml"], make=text_file("groups.yaml", "t0: [animal\n"))  # fmt: skip
refuse("report-image-groups-all", "file", "report --image-groups naming the reserved group 'all'",
       REPORT + " --image-groups {bad}", ["all"], make=text_file("groups.yaml", "t0: all\n"))  # fmt: skip

# ---- a full disk (RLIMIT_FSIZE: the write fails with EFBIG part way, as with ENOSPC) ----
refuse("extract-disk-full", "file", "extract whose NetCDF write fails part way (file size limit 64 KiB)", EXTRACT,
       ["o.nc"], run="cli-sub", file_limit=64 << 10, finding=True)  # fmt: skip
refuse("sweep-disk-full", "file", "sweep whose NetCDF write fails part way (file size limit 4 KiB)", SWEEP,
       ["o.nc"], run="cli-sub", file_limit=4 << 10, finding=True)  # fmt: skip
refuse("gamma-disk-full", "file", "gamma whose CSV write fails part way (file size limit 64 bytes)",
       GAMMA + " --gammas 0.5 1 2", ["o.csv"], run="cli-sub", file_limit=64)  # fmt: skip
refuse("report-disk-full", "file", "report whose tables fail part way (file size limit 128 bytes)", REPORT,
       ["rep"], run="cli-sub", file_limit=128)  # fmt: skip
refuse("sanitize-disk-full", "file", "sanitize whose .npy write fails part way (file size limit 256 bytes)",
       SANITIZE + " --window 3", ["o.npy"], run="cli-sub", file_limit=256)  # fmt: skip

# ---- attack-report ----


def check_attack_report(*names: str) -> Callable[[Shared, Path, Outcome], str | None]:
    """One row per parameter row of each attack file, with that file's layer."""

    def check(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
        import pandas as pd
        import xarray as xr

        table = tmp / "t" / "attack_summary.csv"
        if not table.is_file():
            return f"no {table.name}"
        frame = pd.read_csv(table)
        expected = Counter()
        for name in names:
            with xr.open_dataset(getattr(shared, name)) as ds:
                expected[ds.attrs["layer"]] += ds.sizes["parameter"]
        found = Counter(frame["layer"]) if "layer" in frame else Counter()
        return None if found == expected else f"rows per layer {dict(found)}, expected {dict(expected)}"

    return check


add("attack-report-two-layers", "file", "attack-report of two layers of one run (control)", "cli", "ok",
    argv=AREPORT + " {attack_a} {attack_b}", check=check_attack_report("attack_a", "attack_b"), bound_s=120)  # fmt: skip
refuse("attack-report-two-runs", "file", "attack-report of attack files of two runs (config_hash abc, xyz)",
       AREPORT + " {attack_a} {bad}", ["config_hash", "bad.nc"], make=nc_variant("attack_b", config_hash="xyz"),
       finding=True)  # fmt: skip
refuse("attack-report-two-options", "file", "attack-report of attack files trained with n_train 8 and 10",
       AREPORT + " {attack_a} {attack_c}", ["n_train", "attack_c.nc"], finding=True)  # fmt: skip
refuse("attack-report-epsilon-nan", "file", "attack-report: an attack file with a NaN epsilon_adaptive",
       AREPORT + " {bad}", ["bad.nc", "epsilon_adaptive"],
       make=nc_variant("attack_a", edit=set_var("scores", math.nan, metric="epsilon_adaptive")), finding=True)  # fmt: skip
refuse("attack-report-psnr-inf", "file", "attack-report: an attack file with an infinite inversion_psnr",
       AREPORT + " {bad}", ["bad.nc", "inversion_psnr"],
       make=nc_variant("attack_a", edit=set_var("scores", math.inf, metric="inversion_psnr")), finding=True)  # fmt: skip
refuse("attack-report-probability-5", "file", "attack-report: an attack file with legit_p_target 5.0",
       AREPORT + " {bad}", ["bad.nc", "legit_p_target"],
       make=nc_variant("attack_a", edit=set_var("scores", 5.0, metric="legit_p_target")), finding=True)  # fmt: skip
refuse("attack-report-accuracy-neg", "file", "attack-report: an attack file with legit_accuracy -0.5",
       AREPORT + " {bad}", ["bad.nc", "legit_accuracy"],
       make=nc_variant("attack_a", edit=set_var("scores", -0.5, metric="legit_accuracy")))  # fmt: skip
refuse("attack-report-ssim-2", "file", "attack-report: an attack file with inversion_ssim 2.0",
       AREPORT + " {bad}", ["bad.nc", "inversion_ssim"],
       make=nc_variant("attack_a", edit=set_var("scores", 2.0, metric="inversion_ssim")))  # fmt: skip
refuse("attack-report-p0-nan", "file", "attack-report: an attack file with p0 NaN", AREPORT + " {bad}",
       ["bad.nc", "p0"], make=nc_variant("attack_a", p0=math.nan))  # fmt: skip
refuse("attack-report-sweep", "file", "attack-report: a sweep file", AREPORT + " {sweep}", ["sweep.nc"])
refuse("attack-report-missing", "file", "attack-report: a file that does not exist", AREPORT + " {tmp}/none.nc",
       ["none.nc"])  # fmt: skip
refuse("attack-report-truncated", "file", "attack-report: an attack file cut in half", AREPORT + " {bad}",
       ["cut.nc"], make=truncated("attack_a"))  # fmt: skip
refuse("attack-report-doubled-two-runs", "file", "attack-report --doubled of another run (config_hash xyz)",
       AREPORT + " {attack_b} --doubled {bad}", ["config_hash", "bad.nc"],
       make=nc_variant("attack_c", config_hash="xyz"))  # fmt: skip

# ---- sanitize ----


def check_sanitize_one_window(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    import numpy as np

    from ifmsan.core.sanitize import sample_and_hold

    ifm = np.load(shared.npy)
    expected = sample_and_hold(ifm, ifm.size)
    got = np.load(tmp / "o.npy")
    return None if np.array_equal(got, expected) else "differs from one window over the whole IFM"


add("sanitize-window-1e308", "cli", "sanitize --window 1e308: one window over the IFM, or a refusal", "cli",
    "either", argv=SANITIZE + " --window 1e308", fragments=("--window",), check=check_sanitize_one_window)  # fmt: skip
refuse("sanitize-window-underscore", "cli", "sanitize --window 1_0", SANITIZE + " --window 1_0", ["--window"])
refuse("sanitize-scale-1e308", "cli", "sanitize --knob laplace --scale 1e308 (noise overflows to inf)",
       SANITIZE + " --knob laplace --scale 1e308", ["--scale"])  # fmt: skip
refuse("sanitize-sigma-1e308", "cli", "sanitize --knob hold_gaussian --window 3 --sigma 1e308",
       SANITIZE + " --knob hold_gaussian --window 3 --sigma 1e308", ["--sigma"])  # fmt: skip
refuse("sanitize-sigma-neg", "cli", "sanitize --knob hold_gaussian --window 3 --sigma -1",
       SANITIZE + " --knob hold_gaussian --window 3 --sigma=-1", ["--sigma"])  # fmt: skip
refuse("sanitize-seed-huge", "cli", "sanitize --knob random --window 3 --seed 10**30",
       SANITIZE + " --knob random --window 3 --seed 1" + "0" * 30, ["--seed"])  # fmt: skip
refuse("sanitize-in-missing", "file", "sanitize IN of a missing file", "sanitize {tmp}/none.npy {tmp}/o.npy --window 3",
       ["none.npy"])  # fmt: skip
refuse("sanitize-in-dir", "file", "sanitize IN of a directory", "sanitize {bad} {tmp}/o.npy --window 3", ["adir"],
       make=folder())  # fmt: skip
refuse("sanitize-in-pickle", "file", "sanitize IN: an object-dtype .npy (a pickle)",
       "sanitize {bad} {tmp}/o.npy --window 3", ["bad.npy"],
       make=npy_file(lambda: __import__("numpy").array([{"a": 1}], dtype=object), allow_pickle=True))  # fmt: skip
refuse("sanitize-in-int", "file", "sanitize IN: an int64 .npy", "sanitize {bad} {tmp}/o.npy --window 3", ["bad.npy"],
       make=npy_file(lambda: __import__("numpy").arange(12)))  # fmt: skip
refuse("sanitize-in-truncated", "file", "sanitize IN: a .npy cut short", "sanitize {bad} {tmp}/o.npy --window 3",
       ["cut.npy"], make=truncated("npy", 0.6, "cut.npy"))  # fmt: skip
refuse("sanitize-in-nan", "file", "sanitize IN: a .npy holding NaN", "sanitize {bad} {tmp}/o.npy --window 3",
       ["bad.npy"], make=npy_file(lambda: __import__("numpy").array([1.0, float("nan"), 2.0], dtype="float32")))  # fmt: skip
refuse("sanitize-out-dir", "file", "sanitize OUT an existing directory", "sanitize {npy} {dirout} --window 3",
       ["o.npy"], make=out_folder("o.npy"))  # fmt: skip

# ---- calibrate, certify ----
refuse("calibrate-n-images-0", "cli", "calibrate --n-images 0", CALIBRATE + " --n-images 0", ["--n-images"])
refuse("calibrate-n-images-huge", "cli", "calibrate --n-images 10**12", CALIBRATE + " --n-images 1000000000000",
       ["--n-images"], run="cli-sub", bound_s=60)  # fmt: skip
refuse("calibrate-seed-neg", "cli", "calibrate --seed -1", CALIBRATE + " --n-images 2 --seed=-1", ["--seed"])
refuse("calibrate-out-dir", "file", "calibrate --out an existing directory", CALIBRATE.replace("{tmp}/c.json", "{dirout}")
       + " --n-images 2", ["--out"], make=out_folder("c.json"))  # fmt: skip
refuse("certify-probes-huge", "cli", "certify --probes 10**9", CERTIFY + " --probes 1000000000", ["--probes"],
       run="cli-sub", bound_s=60)  # fmt: skip
refuse("certify-windows-1e308", "cli", "certify --windows 1e308", CERTIFY.replace("--windows 4", "--windows 1e308")
       + " --probes 2", ["--windows"])  # fmt: skip
refuse("certify-resolutions-0", "cli", "certify --resolutions 0", CERTIFY + " --probes 2 --resolutions 0",
       ["--resolutions"])  # fmt: skip
refuse("certify-windows-nan", "cli", "certify --windows nan", CERTIFY.replace("--windows 4", "--windows nan")
       + " --probes 2", ["--windows"])  # fmt: skip

# ---- fetch, train-mini, figures ----
refuse("fetch-retries-neg", "cli", "fetch --retries -1", FETCH + " --sha256 " + "ab" * 32 + " --retries=-1",
       ["--retries"])  # fmt: skip
refuse("fetch-retries-huge", "cli", "fetch --retries 10**12 of a URL that is not there",
       "fetch file:///nonexistent/x.bin {tmp}/x.bin --sha256 " + "ab" * 32 + " --retries 1000000000000", ["--retries"],
       run="cli-sub", bound_s=60)  # fmt: skip
refuse("fetch-timeout-nan", "cli", "fetch --timeout nan", FETCH + " --sha256 " + "ab" * 32 + " --timeout nan",
       ["--timeout"])  # fmt: skip
refuse("fetch-timeout-1e308", "cli", "fetch --timeout 1e308", FETCH + " --sha256 " + "ab" * 32 + " --timeout 1e308",
       ["--timeout"])  # fmt: skip
refuse("fetch-dest-dir", "file", "fetch DEST an existing directory", "fetch file://{npy} {dirout} --sha256 " + "ab" * 32,
       ["dest.npy"], make=out_folder("dest.npy"))  # fmt: skip
refuse("train-mini-epochs-0", "cli", "train-mini --epochs 0", TRAIN.replace("--epochs 1", "--epochs 0"), ["--epochs"])
refuse("train-mini-epochs-huge", "cli", "train-mini --epochs 10**9",
       TRAIN.replace("--epochs 1", "--epochs 1000000000"), ["--epochs"], run="cli-sub", bound_s=60)  # fmt: skip
refuse("train-mini-per-class-huge", "cli", "train-mini --train-per-class 10**12",
       TRAIN.replace("--train-per-class 3", "--train-per-class 1000000000000"), ["--train-per-class"],
       run="cli-sub", bound_s=60)  # fmt: skip
refuse("train-mini-threads-huge", "cli", "train-mini --threads 10**6", TRAIN + " --threads 1000000", ["--threads"],
       run="cli-sub", bound_s=60)  # fmt: skip
refuse("train-mini-min-accuracy-2", "cli", "train-mini --min-accuracy 2", TRAIN + " --min-accuracy 2",
       ["--min-accuracy"])  # fmt: skip
refuse("train-mini-min-accuracy-nan", "cli", "train-mini --min-accuracy nan", TRAIN + " --min-accuracy nan",
       ["--min-accuracy"])  # fmt: skip
refuse("figures-gammas-1024", "cli", "figures --gammas 1024", "figures --sweeps {sweep} --out-dir {tmp}/fig --gammas 1024",
       ["--gammas"], finding=True)  # fmt: skip
refuse("figures-sweep-probability-nan", "file", "figures --sweeps: a sweep whose probability holds NaN",
       "figures --sweeps {bad} --out-dir {tmp}/fig", ["bad.nc", "probability"],
       make=nc_variant("sweep", edit=set_first("probability", math.nan)))  # fmt: skip

# ---- the manifest (python -m ifmsan.workflow.manifest) ----


def check_manifest_config(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    import yaml

    from ifmsan.workflow import configcheck, schema

    config = yaml.safe_load((tmp / "out.yaml").read_text())
    try:
        schema.check_schema(config, schema.load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))
        configcheck.check_config(config, cuda_available=False, files=False)
    except ValueError as exc:
        return f"the written config fails the plan-time checks: {str(exc)[:200]}"
    image = config["images"][0]
    return None if image["target"] == 3 and image["sha256"] == "ab" * 32 else f"images[0] is {image}"


add("manifest-ok", "cli", "a valid manifest on the tiny base (control): the written config passes the checks",
    "manifest", "ok", argv=MANIFEST + " --knobs nonzero_mean first gaussian", make=manifest_files(manifest_row(class_index="3")), check=check_manifest_config)  # fmt: skip
refuse("manifest-class-underscore", "cli", "manifest class_index 1_0 (read as 10)", MANIFEST, ["class_index", "1_0",
       "line 2"], run="manifest", make=manifest_files(manifest_row(class_index="1_0")), finding=True)  # fmt: skip
refuse("manifest-class-fullwidth", "cli", "manifest class_index in full-width digits (int() reads it)", MANIFEST,
       ["class_index", "line 2"], run="manifest", make=manifest_files(manifest_row(class_index="\uff13")))  # fmt: skip
refuse("manifest-class-500-mini", "cli", "manifest class_index 500 on alexnet_mini's 10 classes",
       MANIFEST + " --knobs nonzero_mean first gaussian", ["500", "line 2"], run="manifest", make=manifest_files(manifest_row(class_index="500")), finding=True)  # fmt: skip
refuse("manifest-knob-unknown", "cli", "manifest --knobs bogus", MANIFEST + " --knobs bogus", ["bogus"],
       run="manifest", make=manifest_files(manifest_row()), finding=True)  # fmt: skip
refuse("manifest-run-dotdot", "cli", "manifest --run ../x", MANIFEST + " --run ../x", ["../x"], run="manifest",
       make=manifest_files(manifest_row()), finding=True)  # fmt: skip
refuse("manifest-missing-columns", "cli", "manifest without sha256 and url columns", MANIFEST, ["sha256", "url"],
       run="manifest", make=manifest_files("n01.JPEG\t0\n", header="file\tclass_index\n"))  # fmt: skip
refuse("manifest-out-dir", "cli", "manifest --out an existing directory", MANIFEST.replace("{tmp}/out.yaml", "{dirout}"),
       ["--out|out.yaml"], run="manifest", make=both(manifest_files(manifest_row()), out_folder("out.yaml")),
       finding=True)  # fmt: skip
refuse("manifest-base-broken", "cli", "manifest --base of a broken YAML file", MANIFEST, ["base.yaml", "line"],
       run="manifest", make=manifest_files(manifest_row(), base="run: [tiny\nmodel: {name: alexnet_mini\n"),
       finding=True)  # fmt: skip
refuse("manifest-base-alias-bomb", "cli", "manifest --base of a YAML alias bomb", MANIFEST, ["base.yaml"],
       run="manifest", make=manifest_files(manifest_row(), base=alias_bomb()), bound_s=10, finding=True)  # fmt: skip
refuse("manifest-base-missing", "cli", "manifest --base of a missing file",
       MANIFEST.replace("{base}", "{tmp}/nobase.yaml"), ["nobase.yaml"], run="manifest",
       make=manifest_files(manifest_row()))  # fmt: skip
refuse("manifest-sha-uppercase", "cli", "manifest sha256 in upper case", MANIFEST, ["sha256", "line 2"],
       run="manifest", make=manifest_files(manifest_row(sha256="AB" * 32)))  # fmt: skip

# ---- library ----


def lib(id: str, about: str, call: Callable[[Shared, Path], Any], expect: str, fragments: Sequence[str] = (),
        check: Callable[[Shared, Path, Outcome], str | None] | None = None, **kw: Any) -> None:  # fmt: skip
    add(id, "library", about, "library", expect, call=call, fragments=tuple(fragments), check=check, **kw)


def returns(expected: Any) -> Callable[[Shared, Path, Outcome], str | None]:
    def check(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
        return None if outcome.value == expected else f"returned {outcome.value!r}, expected {expected!r}"

    return check


def n_star(gamma: float, probabilities: Sequence[float] = (0.5, 0.4, 0.0), p0: float = 0.9) -> Callable:
    def call(shared: Shared, tmp: Path) -> Any:
        from ifmsan.core.metrics import n_star_for_gamma

        return n_star_for_gamma([2, 3, 4], list(probabilities), p0=p0, gamma=gamma)

    return call


lib("lib-n-star-gamma-1024", "n_star_for_gamma(gamma=1024): p=0 meets it at window 4, or a refusal", n_star(1024),
    "either", ["gamma"], returns(4), finding=True)  # fmt: skip
lib("lib-n-star-gamma-1e308", "n_star_for_gamma(gamma=1e308)", n_star(1e308), "either", ["gamma"], returns(4),
    finding=True)  # fmt: skip
lib("lib-n-star-probability-5", "n_star_for_gamma with a probability of 5.0", n_star(1, (5.0, 0.4, 0.0)), "refuse",
    ["probabilit"])  # fmt: skip
lib("lib-n-star-p0-nan", "n_star_for_gamma(p0=nan)", n_star(1, p0=math.nan), "refuse", ["p0"])


def gamma_bound_huge(shared: Shared, tmp: Path) -> Any:
    from ifmsan.core.metrics import gamma_bound

    return gamma_bound(0.9, 1e308)


lib("lib-gamma-bound-1e308", "gamma_bound(0.9, 1e308): 0.0 or a refusal", gamma_bound_huge, "either", ["gamma"],
    returns(0.0))  # fmt: skip


def eff_san_decimals(shared: Shared, tmp: Path) -> Any:
    from ifmsan.core.metrics import eff_san

    return eff_san([0.5, 0.4], decimals=10**12)


lib("lib-eff-san-decimals-huge", "eff_san(decimals=10**12)", eff_san_decimals, "refuse", ["decimals"])


def hold_window_bool(shared: Shared, tmp: Path) -> Any:
    import numpy as np

    from ifmsan.core.sanitize import sample_and_hold

    return sample_and_hold(np.ones(8, dtype=np.float32), True)


lib("lib-window-bool", "sample_and_hold(ifm, True)", hold_window_bool, "refuse", ["window"])


def noise_scale_huge(shared: Shared, tmp: Path) -> Any:
    import torch

    from ifmsan.core.knobs import get_knob

    return get_knob("laplace").apply(torch.ones(16), 1e308)


def check_finite_output(shared: Shared, tmp: Path, outcome: Outcome) -> str | None:
    import torch

    value = outcome.value
    return None if isinstance(value, torch.Tensor) and bool(torch.isfinite(value).all()) else "non-finite output"


lib("lib-laplace-scale-1e308", "the laplace knob at scale 1e308: a refusal, or finite output",
    noise_scale_huge, "either", ["scale"], check_finite_output)  # fmt: skip


def read_attack_nan(shared: Shared, tmp: Path) -> Any:
    from ifmsan.steps import io as ifmsan_io

    path = nc_variant("attack_a", edit=set_var("scores", math.nan, metric="epsilon_legit"))(shared, tmp)["bad"]
    return ifmsan_io.read_attack(path)


lib("lib-read-attack-nan", "io.read_attack of a file with a NaN epsilon_legit", read_attack_nan, "refuse",
    ["bad.nc", "epsilon_legit"])  # fmt: skip


# ---- the DAG: snakemake -n on tiny.yaml with one key broken ----


def dag(id: str, about: str, change: Callable[[dict[str, Any]], Any] | str, fragments: Sequence[str], **kw: Any):
    add(id, "dag", about, "dag", kw.pop("expect", "refuse"), config=change, fragments=tuple(fragments),
        bound_s=kw.pop("bound_s", 45), **kw)  # fmt: skip


def setting(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: set_key(config, dotted, value)


dag("dag-gamma-1e308", "gammas: [0.5, 1e308] (passes the dry run, overflows in the jobs)",
    setting("gammas", [0.5, 1e308]), ["gammas[1]"], finding=True)  # fmt: skip
dag("dag-gamma-1024", "gammas: [1024]", setting("gammas", [1024]), ["gammas[0]"], finding=True)
dag("dag-windows-stop-huge", "windows.stop: 10**15", setting("windows.stop", 10**15), ["windows.stop"], finding=True)
dag("dag-windows-step-0", "windows.step: 0", setting("windows.step", 0), ["windows.step"])
dag("dag-n-train-float", "attacks.n_train: 20.0", setting("attacks.n_train", 20.0), ["attacks.n_train"], finding=True)
dag("dag-n-train-huge", "attacks.n_train: 10**12", setting("attacks.n_train", 10**12), ["attacks.n_train"],
    finding=True)  # fmt: skip
dag("dag-n-examples-0", "attacks.n_examples: 0", setting("attacks.n_examples", 0), ["attacks.n_examples"],
    finding=True)  # fmt: skip
dag("dag-n-examples-over-n-test", "attacks.n_examples: 11 with n_test 10", setting("attacks.n_examples", 11),
    ["attacks.n_examples"])  # fmt: skip
dag("dag-n-test-0", "attacks.n_test: 0", setting("attacks.n_test", 0), ["attacks.n_test"])
dag("dag-resolution-8192", "attacks.resolution: 8192", setting("attacks.resolution", 8192), ["attacks.resolution"],
    finding=True)  # fmt: skip
dag("dag-epochs-huge", "attacks.epochs.adaptive: 10**9", setting("attacks.epochs.adaptive", 10**9),
    ["attacks.epochs.adaptive"])  # fmt: skip
dag("dag-threads-huge", "threads: 10**6", setting("threads", 10**6), ["threads"], finding=True)
dag("dag-threads-string", "threads: 'two'", setting("threads", "two"), ["threads"])
dag("dag-batch-size-huge", "batch_size: 10**12", setting("batch_size", 10**12), ["batch_size"])
dag("dag-batch-size-conv1", "layers [conv1] with batch_size 50000 (tens of GB per batch)",
    lambda c: (set_key(c, "batch_size", 50000), set_key(c, "layers", ["conv1", "pool5"])), ["batch_size|memory"])  # fmt: skip
dag("dag-noise-scale-1e308", "noise_scales: [0, 1, 1e308]", setting("noise_scales", [0.0, 1.0, 1e308]),
    ["noise_scales[2]"], finding=True)  # fmt: skip
dag("dag-run-dotdot", "run: ../x", setting("run", "../x"), ["run", "../x"], finding=True)
dag(
    "dag-knob-unknown",
    "knobs: [nonzero_mean, bogus]",
    setting("knobs", ["nonzero_mean", "bogus"]),
    ["knobs[1]", "bogus"],
)
dag("dag-attacks-unknown-key", "attacks.n_trian: 20 (misspelt)", setting("attacks.n_trian", 20), ["n_trian"])
dag("dag-alias-bomb", "a YAML alias bomb in the config (billion laughs)", "alias-bomb", ["alias|anchor"],
    bound_s=20, finding=True)  # fmt: skip
dag("dag-duplicate-key", "the key run: given twice in the YAML", "duplicate-key", ["run"])
dag("dag-duplicate-image-ids", "two images with the same id",
    lambda c: c["images"].append({"id": "mini_test_1", "source": "minidata:test:2", "target": 2}), ["mini_test_1"])  # fmt: skip
dag("dag-bad-checksum", "images[0] from a file:// URL with a 63-digit sha256",
    setting("images.0", {"id": "f", "source": "file:///tmp/x.png", "sha256": "a" * 63, "target": 1}),
    ["images[0].sha256"])  # fmt: skip
dag("dag-target-bool", "images[0].target: true", setting("images.0.target", True), ["images[0].target"])
dag("dag-gamma-string", "gammas: ['1']", setting("gammas", ["1"]), ["gammas[0]"])
dag("dag-decimals-huge", "decimals: 10**6", setting("decimals", 10**6), ["decimals"])
dag("dag-seed-huge", "seed: 2**70", setting("seed", 2**70), ["seed"])
dag("dag-certify-probes-huge", "certify.probes: 10**9", setting("certify.probes", 10**9), ["certify.probes"])
dag("dag-train-mini-epochs-huge", "train_mini.epochs: 10**9", setting("train_mini.epochs", 10**9),
    ["train_mini.epochs"])  # fmt: skip
dag("dag-images-empty", "images: []", setting("images", []), ["images", "[]"])
dag("dag-tiny-ok", "tests/data/tiny.yaml as it is (control): the dry run plans the jobs", lambda c: None, [],
    expect="ok", bound_s=90)  # fmt: skip

TRIES: list[Try] = T
"""Every try, in the order above."""


# --- running and judging ----------------------------------------------------------------------------------------


def _files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and ".snakemake" not in p.relative_to(root).parts
    }


def _limits(file_limit: int | None) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return apply


def _subprocess(
    command: list[str], *, cwd: Path, timeout: float, limit: bool, file_limit: int | None = None
) -> tuple[int | None, str, bool]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "IFMSAN_NO_FAST_EXIT": "1"}
    env.pop("IFMSAN_PARENT_PID", None)
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True, preexec_fn=_limits(file_limit) if limit else None,
    ) as process:  # fmt: skip
        try:
            output, _ = process.communicate(timeout=timeout)
            return process.returncode, output, False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return None, output, True


def _in_process(function: Callable[[], Any]) -> Outcome:
    """Run function() with stdout and stderr captured; SystemExit gives the code, any other exception is noted."""
    import torch

    threads = torch.get_num_threads()
    out = io.StringIO()
    start = time.perf_counter()
    code: int | None
    exception, value = "", None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            value = function()
            code = int(value or 0) if isinstance(value, int | type(None)) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        if not isinstance(exc.code, int | type(None)):
            out.write(str(exc.code) + "\n")
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 (an uncaught exception is what the classifier looks for)
        code, exception = None, f"{type(exc).__name__}: {exc}"
    finally:
        torch.set_num_threads(threads)
    return Outcome(code=code, out=out.getvalue(), seconds=time.perf_counter() - start, exception=exception, value=value)


def _library(function: Callable[[], Any]) -> Outcome:
    """A library call: a ValueError, OSError or KeyError is a refusal (code 2, its text the message)."""
    start = time.perf_counter()
    try:
        value = function()
    except (ValueError, OSError, KeyError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        return Outcome(code=2, out=f"error: {text}\n", seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001
        return Outcome(code=None, out="", seconds=time.perf_counter() - start, exception=f"{type(exc).__name__}: {exc}")
    return Outcome(code=0, out="", seconds=time.perf_counter() - start, value=value)


def _dag_config(try_: Try, tmp: Path) -> Path:
    import yaml

    path = tmp / "config.yaml"
    if try_.config == "alias-bomb":
        path.write_text(TINY_YAML.read_text() + alias_bomb())
    elif try_.config == "duplicate-key":
        path.write_text(TINY_YAML.read_text() + "run: other\n")
    else:
        config = tiny_config()
        assert callable(try_.config)
        try_.config(config)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def execute(try_: Try, shared: Shared, tmp: Path) -> Outcome:
    """Prepare and run one try in the folder tmp; the outcome records the files it left there."""
    fields: dict[str, str] = {"tmp": str(tmp)}
    if try_.make is not None:
        fields.update(try_.make(shared, tmp))
    lookup = lambda name: fields[name] if name in fields else shared[name]  # noqa: E731
    before = _files(tmp)
    if try_.run == "cli":
        from ifmsan.cli import main

        argv = fill(try_.argv, lookup)
        outcome = _in_process(lambda: main(argv))
    elif try_.run == "manifest":
        from ifmsan.workflow.manifest import main as manifest_main

        argv = fill(try_.argv, lookup)
        outcome = _in_process(lambda: manifest_main(argv))
    elif try_.run == "cli-sub":
        argv = fill(try_.argv, lookup)
        code = "import sys; from ifmsan.cli import main; sys.exit(main(sys.argv[1:]))"
        start = time.perf_counter()
        rc, text, timed_out = _subprocess(
            [sys.executable, "-c", code, *argv], cwd=tmp, timeout=try_.bound_s, limit=True, file_limit=try_.file_limit
        )
        outcome = Outcome(code=rc, out=text, seconds=time.perf_counter() - start, timed_out=timed_out)
    elif try_.run == "dag":
        config = _dag_config(try_, tmp)
        before = _files(tmp)
        command = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp),
                   "--configfile", str(config), "-n", "-q", "--cores", "1"]  # fmt: skip
        start = time.perf_counter()
        rc, text, timed_out = _subprocess(command, cwd=tmp, timeout=try_.bound_s, limit=False)
        outcome = Outcome(code=rc, out=text, seconds=time.perf_counter() - start, timed_out=timed_out)
    elif try_.run == "library":
        assert try_.call is not None
        call = try_.call
        outcome = _library(lambda: call(shared, tmp))
    else:
        raise ValueError(f"try {try_.id}: unknown run {try_.run!r}")
    outcome.left = sorted(f for f in _files(tmp) - before if not f.startswith("in" + os.sep))  # in/: made inputs
    return outcome


def error_lines(text: str) -> tuple[str, list[str]]:
    """The first line that says `error:` with the problem list below it (`  - ...` lines, one per problem, as the
    config checks write them), and the other non-log lines after it (a one-line message has none)."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if "error:" in line:
            after = [x for x in lines[number + 1 :] if x.strip() and not LOG_LINE.match(x)]
            listed = 0
            while listed < len(after) and after[listed].startswith("  - "):
                listed += 1
            return "\n".join([line, *after[:listed]]), after[listed:]
    return "", []


def has_fragment(text: str, fragment: str) -> bool:
    return any(option.lower() in text.lower() for option in fragment.split("|"))


def judge(try_: Try, outcome: Outcome, shared: Shared, tmp: Path) -> tuple[str, str]:
    """(verdict, one-line reason)."""
    text = outcome.out
    if outcome.timed_out:
        return "slow", f"killed after {try_.bound_s:.0f} s"
    if outcome.exception:
        return "traceback", f"uncaught {outcome.exception[:160]}"
    if "Traceback (most recent call last)" in text:
        last = [x for x in text.splitlines() if x.strip()][-1:] or [""]
        return "traceback", f"traceback: {last[0].strip()[:160]}"
    if try_.run == "dag":
        for name in DAG_ERROR.findall(text):
            if name not in OK_DAG_ERRORS:
                return "traceback", f"{name} while planning: {_first_error(text)}"
    elif try_.run != "library" and outcome.code not in (0, 2):
        return "traceback", f"exit {outcome.code}: {_last_line(text)}"
    refused = outcome.code != 0
    if not refused:
        if try_.expect == "refuse":
            return "silent", "accepted (exit 0)" + (f"; left {', '.join(outcome.left[:3])}" if outcome.left else "")
        problem = try_.check(shared, tmp, outcome) if try_.check else None
        if problem:
            return "silent", problem
        if outcome.seconds > try_.bound_s:
            return "slow", f"{outcome.seconds:.0f} s > {try_.bound_s:.0f} s"
        return "correct", f"{outcome.seconds:.1f} s"
    if try_.expect == "ok":
        return "unclear", f"a valid input was refused: {_first_error(text)}"
    if outcome.seconds > try_.bound_s:
        return "slow", f"refused after {outcome.seconds:.0f} s > {try_.bound_s:.0f} s"
    if try_.run == "dag":
        message, rest = dag_message(text), []
    else:
        message, rest = error_lines(text)
        if not message:
            return "unclear", f"no 'error:' line: {_last_line(text)}"
    missing = [f for f in try_.fragments if not has_fragment(message, f)]
    if missing:
        return "unclear", f"lacks {', '.join(missing)}: {_first_error(text)}"
    bad = [f for f in try_.forbidden if f.lower() in message.lower()]
    if bad:
        return "unclear", f"says {', '.join(bad)}: {_first_error(text)}"
    if rest:
        return "unclear", f"message spans {1 + len(rest)} lines: {message.strip()[:120]}"
    if outcome.left:
        return "unclear", f"refused but left {', '.join(outcome.left[:3])}"
    return "clean", _first_error(text)


def dag_message(text: str) -> str:
    """What a refused dry run says: the lines after Snakemake's `XError in file ...:` header, up to its `File`
    lines (the whole output when there is no header)."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if DAG_ERROR.match(line):
            body = []
            for following in lines[number + 1 :]:
                if following.lstrip().startswith('File "'):
                    break
                body.append(following)
            return "\n".join(body)
    return text


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1][:200] if lines else "(no output)"


def _first_error(text: str) -> str:
    if DAG_ERROR.search(text):
        body = [x.strip() for x in dag_message(text).splitlines() if x.strip()]
        return " / ".join(body)[:240] or _last_line(text)
    message, _ = error_lines(text)
    if message:
        return message.strip()[:200]
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.lstrip().startswith("File ")]
    for line in lines:
        if re.search(r"error|invalid|must|problem", line, re.IGNORECASE):
            return line[:200]
    return _last_line(text)


@dataclass
class Result:
    id: str
    kind: str
    verdict: str
    reason: str
    seconds: float
    finding: bool


_SHARED: Shared | None = None


def shared_inputs() -> Shared:
    global _SHARED
    if _SHARED is None:
        _SHARED = Shared()
    return _SHARED


def run_try(try_: Try, shared: Shared | None = None) -> Result:
    """Run one try in a fresh folder (removed afterwards) and judge it."""
    shared = shared or shared_inputs()
    tmp = Path(tempfile.mkdtemp(prefix=f"try-{try_.id}-", dir=shared.root))
    start = time.perf_counter()
    try:
        try:
            outcome = execute(try_, shared, tmp)
        except Exception as exc:  # noqa: BLE001 (a shared input or a made file could not be built)
            return Result(try_.id, try_.kind, "broken", f"{type(exc).__name__}: {str(exc)[:300]}",
                          time.perf_counter() - start, try_.finding)  # fmt: skip
        verdict, reason = judge(try_, outcome, shared, tmp)
        return Result(try_.id, try_.kind, verdict, reason, outcome.seconds, try_.finding)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_DAG_POOL: Any = None
_DAG_FUTURES: dict[str, Any] = {}


def start_dag_tries(tries: Sequence[Try]) -> None:
    """Start the DAG tries among `tries` in two background threads (each a `snakemake -n` subprocess), so they run
    while the in-process tries do; result_of waits for them."""
    global _DAG_POOL
    from concurrent.futures import ThreadPoolExecutor

    shared = shared_inputs()
    for try_ in tries:
        if try_.run == "dag" and try_.id not in _DAG_FUTURES:
            if _DAG_POOL is None:
                _DAG_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hostile-dag")
            _DAG_FUTURES[try_.id] = _DAG_POOL.submit(run_try, try_, shared)


def result_of(try_: Try) -> Result:
    """The try's result: a DAG try's from its background run (started now if it was not), any other run here."""
    if try_.run == "dag":
        start_dag_tries([try_])
        return _DAG_FUTURES[try_.id].result()
    return run_try(try_)


def by_id() -> dict[str, Try]:
    return {t.id: t for t in TRIES}


def check_tries() -> None:
    """Ids unique and made of [a-z0-9_-], kinds and expectations known, every refusal with a fragment."""
    ids = [t.id for t in TRIES]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    for t in TRIES:
        assert re.fullmatch(r"[a-z0-9_-]+", t.id), t.id
        assert t.kind in KINDS and t.expect in ("refuse", "ok", "either"), t.id
        assert t.expect == "ok" or t.fragments, t.id
        assert t.expect == "refuse" or t.check is not None or t.run == "dag", t.id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the hostile tries and print each verdict and the counts.")
    parser.add_argument("--only", choices=KINDS, help="run the tries of one kind")
    parser.add_argument("--id", nargs="+", help="run these tries only")
    parser.add_argument("--json", type=Path, help="write every result as JSON here")
    args = parser.parse_args(argv)
    check_tries()
    chosen = [t for t in TRIES if (not args.only or t.kind == args.only) and (not args.id or t.id in args.id)]
    import torch

    torch.set_num_threads(1)
    results = []
    start = time.perf_counter()
    width = max(len(t.id) for t in chosen)
    print(f"{'id':<{width}}  {'kind':<7}  {'verdict':<9}  {'s':>5}  reason", flush=True)
    start_dag_tries(chosen)
    for try_ in chosen:
        result = result_of(try_)
        results.append(result)
        mark = "*" if result.finding else " "
        print(f"{result.id:<{width}}{mark} {result.kind:<7}  {result.verdict:<9}  {result.seconds:5.1f}  "
              f"{result.reason[:170]}", flush=True)  # fmt: skip
    counts = Counter(r.verdict for r in results)
    print(f"\n{len(results)} tries ({sum(r.finding for r in results)} from the issue's findings, marked *) in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    print("  ".join(f"{v}: {counts.get(v, 0)}" for v in VERDICTS))
    for kind in KINDS:
        subset = Counter(r.verdict for r in results if r.kind == kind)
        if subset:
            print(f"  {kind:<8}" + "  ".join(f"{v}: {subset.get(v, 0)}" for v in VERDICTS if subset.get(v)))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1) + "\n")
    return 0 if all(r.verdict in GOOD for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
