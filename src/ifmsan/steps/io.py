"""NetCDF in and out: labelled IFMs and sweep curves with provenance, written atomically and compressed."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ifmsan._shared.atomic import atomic_path
from ifmsan._shared.ids import SAFE_ID_MAX, is_safe_id


def check_id(value: str, *, name: str = "id") -> str:
    """Return an id that is safe as a path component (ifmsan._shared.ids), or raise a ValueError saying what is allowed."""
    if not is_safe_id(value):
        raise ValueError(
            f"{name} {value!r} is not a safe id: expected 1-{SAFE_ID_MAX} letters, digits, '_', '.' or '-', "
            "starting with a letter or digit and without '..'"
        )
    return value


def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """NetCDF attributes accept str and numbers only: booleans become 0/1 and None becomes ''."""
    cleaned: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bool | np.bool_):
            cleaned[key] = int(value)
        elif value is None:
            cleaned[key] = ""
        elif isinstance(value, str | int | float | np.integer | np.floating):
            cleaned[key] = value
        else:
            cleaned[key] = json.dumps(value, default=str)
    return cleaned


def write_netcdf(dataset: xr.Dataset, path: str | Path) -> Path:
    """Write a Dataset with zlib compression on every numeric variable, atomically."""
    encoding = {
        name: {"zlib": True, "complevel": 4, "shuffle": True}
        for name, var in dataset.data_vars.items()
        if np.issubdtype(var.dtype, np.number)
    }
    dataset = dataset.copy()
    dataset.attrs = _clean_attrs(dataset.attrs)
    for var in dataset.variables.values():
        var.attrs = _clean_attrs(var.attrs)
    target = Path(path)
    with atomic_path(target, suffix=".part.nc") as tmp:
        try:
            dataset.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        except RuntimeError as exc:  # netCDF4's "NetCDF: HDF error" (a full disk among its causes): an OSError here
            raise OSError(f"{exc} while writing NetCDF") from exc
    return target


NETCDF_EXPANSION = 16
"""A file's variables may need at most this multiple of its size in memory (zlib rarely does better on IFMs) ..."""
NETCDF_FLOOR_BYTES = 64 * 2**20
"""... or this much, whichever is larger (small files with long runs of zeros compress far better) ..."""
NETCDF_MAX_BYTES = 4 * 2**30
"""... and never more than this: read_netcdf refuses a file whose declared shapes need more, before loading it."""


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # NetCDF-4 files are HDF5 files; ifmsan writes no other kind


def netcdf_memory_limit(size: int) -> int:
    """The bytes read_netcdf may load from a file of `size` bytes (see NETCDF_EXPANSION and its neighbours)."""
    return min(NETCDF_MAX_BYTES, max(NETCDF_FLOOR_BYTES, NETCDF_EXPANSION * size))


def read_netcdf(
    path: str | Path, *, max_bytes: int | None = None, skip: Callable[[xr.Dataset], Collection[str]] | None = None
) -> xr.Dataset:
    """Read a NetCDF file into memory and close it, with a clear error for missing, foreign or inflated files.

    The variables' declared shapes are checked against `max_bytes` (default netcdf_memory_limit of the file
    size) before anything is loaded, so a small file cannot ask for gigabytes. The data variables `skip` names (it is
    given the file opened lazily) are not read (a job needs one IFM of thirteen); encoding["skipped_variables"] lists
    them.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"NetCDF file not found: {source}")
    size = source.stat().st_size
    limit = netcdf_memory_limit(size) if max_bytes is None else max_bytes
    with source.open("rb") as handle:
        head = handle.read(8)
    if head != _HDF5_SIGNATURE:  # libnetcdf can spin for minutes on a corrupt NetCDF-3 header: never hand it one
        kind = "a NetCDF-3 (classic) file" if head[:3] == b"CDF" else f"not a NetCDF file (it starts with {head!r})"
        raise ValueError(
            f"{source} is {kind}; expected a NetCDF-4 file as ifmsan writes them (convert with `nccopy -k nc4 IN OUT`)"
        )
    try:
        needed, shapes = _declared_bytes(source)
        if needed > limit:
            raise _TooLarge(
                f"{source}: its variables would need {needed} bytes in memory, more than the {limit} allowed for a "
                f"{size}-byte file (ifmsan.steps.io.netcdf_memory_limit); declared: {shapes[:500]}"
            )
        with xr.open_dataset(source, engine="netcdf4") as dataset:  # opening already loads index coordinates
            skipped = [] if skip is None else [str(name) for name in skip(dataset) if name in dataset.data_vars]
            loaded = dataset.drop_vars(skipped).load()
        loaded.encoding["skipped_variables"] = tuple(skipped)
        return loaded
    except _TooLarge as exc:
        raise ValueError(str(exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- netCDF4/HDF5/xarray raise OSError, RuntimeError, KeyError...
        raise ValueError(f"{source} is not a readable NetCDF file ({type(exc).__name__}: {exc})") from exc


def _declared_bytes(source: Path) -> tuple[int, str]:
    """Bytes the root group's variables declare (shape x item size, 8 per variable-length item), from metadata only."""
    import netCDF4

    total, shapes = 0, []
    with netCDF4.Dataset(source) as nc:
        for name, var in nc.variables.items():
            itemsize = np.dtype(var.dtype).itemsize if var.dtype is not str else 8
            total += int(np.prod(var.shape, dtype=object)) * max(itemsize, 1)
            shapes.append(f"{name} {tuple(var.shape)}")
    return total, ", ".join(shapes)


class _TooLarge(Exception):
    """Raised inside read_netcdf's try block, so that its broad handler does not rewrap the message."""


KIND_ATTR = "ifmsan_kind"
"""Attribute naming what a file is: "ifms" (`ifmsan extract`) or "sweep" (`ifmsan sweep`); older files go by structure."""
KINDS: dict[str, str] = {
    "ifms": "the IFM file written by `ifmsan extract`",
    "sweep": "a sweep file written by `ifmsan sweep`",
    "attack": "an attack file written by `ifmsan attack`",
    "certify_maps": "a certificate map file written by `ifmsan certify`",
}
PROVENANCE_ATTRS = (
    "model",
    "weights_source",
    "weights_sha",
    "weights_content_xxh3",
    "trained",
    "stand_in",
    "ifmsan_version",
    "note",
    "preprocess",
    KIND_ATTR,
)
"""What extract.provenance writes into every output ("note" only for some weights, "preprocess" for bvlc_alexnet,
"weights_content_xxh3" for its converted weights)."""
IMAGE_ATTRS = ("image_id", "image_source", "image_sha256")
"""The image an IFM file was made from; `ifmsan extract` sets them, --attr may not."""
IFMS_ATTRS = (
    *PROVENANCE_ATTRS,
    *IMAGE_ATTRS,
    "target",
    "target_source",
    "original_top1",
    "original_top1_name",
    "p0",
    "ifm_layers",
)
"""Every attribute `extract_ifms` computes (tests/test_provenance.py checks this against a written file)."""
SWEEP_ATTRS = (
    *PROVENANCE_ATTRS, "image_id", "image_sha256", "p0", "target", "target_source", "original_top1", "layer", "knob",
    "parameter", "chain", "chain_p", "seed", "ifm_size", "zero_ratio", "n_zeros",
)  # fmt: skip
"""Every attribute `sweep_dataset` computes (checked like IFMS_ATTRS)."""
ATTACK_ATTRS = (
    *PROVENANCE_ATTRS, "layer", "knob", "parameter", "p0", "original_accuracy", "label_source", "label_majority",
    "attribute", "attribute_chance", "attribute_majority", "mean_image_psnr", "mean_image_ssim", "data", "n_train",
    "n_test", "epochs_adaptive", "epochs_inversion", "epochs_attribute", "lr_adaptive", "lr_attack", "resolution",
    "batch_size", "n_examples", "seed", "threads", "gammas", "n_star", "n_star_per_image", "optimize_images",
    "optimize_iterations", "optimize_lr", "optimize_tv", "mean_image_mse", "knob_sigma", "knob_calibration_std",
    "noise_scale",
)  # fmt: skip
"""Every attribute `ifmsan attack` computes (docs/netcdf.md)."""
CERTIFY_MAPS_ATTRS = (
    *PROVENANCE_ATTRS, "layer", "probes", "probe_seed", "ifm_shape", "estimator", "resolution_note", "image_id",
    "image_source", "image_sha256",
)  # fmt: skip
"""Every attribute `ifmsan certify` computes (docs/netcdf.md)."""
RESERVED_ATTRS: tuple[str, ...] = tuple(
    sorted(set(IFMS_ATTRS) | set(SWEEP_ATTRS) | set(ATTACK_ATTRS) | set(CERTIFY_MAPS_ATTRS))
)
"""Keys `--attr` may not set: the library computes them, so a user value would make the provenance lie. The
workflow sets config_hash and run; config_hash is copied from the IFMs into sweeps and must agree with them."""
MAX_ATTR_KEY = 64


def check_user_attrs(attrs: Mapping[str, Any], *, option: str = "--attr") -> dict[str, Any]:
    """Refuse attribute keys the library computes, or that NetCDF cannot store, before any work is done."""
    reserved = sorted(key for key in attrs if key in RESERVED_ATTRS)
    if reserved:
        raise ValueError(
            f"{option} may not set {', '.join(reserved)}: the library computes these keys "
            f"({', '.join(RESERVED_ATTRS)}); choose another name"
        )
    for key, value in attrs.items():
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_") or len(key) > MAX_ATTR_KEY:
            raise ValueError(
                f"{option} key {key!r} is not allowed: expected an identifier of at most {MAX_ATTR_KEY} characters "
                "not starting with '_' (NetCDF reserves those)"
            )
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{option} {key}: the value {value!r} is not valid UTF-8 text") from None
    return dict(attrs)


def attr_text(value: Any) -> str:
    """An attribute as text (netCDF may hand back numpy strings or bytes)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def file_kind(dataset: xr.Dataset) -> str | None:
    """'ifms', 'sweep', another recorded kind, or None: the KIND_ATTR attribute, else the structure of older files."""
    kind = attr_text(dataset.attrs.get(KIND_ATTR))
    if kind:
        return kind
    if "probability" in dataset.data_vars:
        return "sweep"
    if "layer" in dataset.coords and "softmax" in dataset.data_vars:
        return "ifms"
    return None


def describe(dataset: xr.Dataset) -> str:
    """A few words that tell a file apart: 'a sweep file (layer pool5, knob first)'."""
    attrs = dataset.attrs
    kind = file_kind(dataset)
    if kind == "sweep":
        return (
            f"a sweep file (layer {attr_text(attrs.get('layer')) or '?'}, knob {attr_text(attrs.get('knob')) or '?'})"
        )
    if kind == "ifms":
        image = attr_text(attrs.get("image_id")) or "?"
        return f"an IFM file (image {image}, model {attr_text(attrs.get('model')) or '?'})"
    if kind:
        return f"a file of kind {kind!r}"
    return "neither an IFM file nor a sweep file (no `softmax`/`layer` and no `probability` variable)"


def _read_kind(
    path: str | Path, kind: str, *, skip: Callable[[xr.Dataset], Collection[str]] | None = None
) -> xr.Dataset:
    """Read a NetCDF file and refuse it unless it is of `kind`, saying what it is instead."""
    dataset = read_netcdf(path, skip=skip)
    if file_kind(dataset) != kind:
        raise ValueError(f"{path} is {describe(dataset)}; expected {KINDS[kind]}")
    dataset.encoding["source"] = str(path)
    return dataset


def read_ifms(path: str | Path, *, layers: Collection[str] | None = None) -> xr.Dataset:
    """The IFM file of one image, checked to be one: its layers, softmax, target and p0 present.

    With `layers`, only those IFM variables are read (the others are checked to exist, not loaded); a name the file
    does not hold is a ValueError listing the layers it has.
    """
    wanted = None if layers is None else set(layers)
    dataset = _read_kind(path, "ifms", skip=None if wanted is None else _other_ifm_variables(wanted))
    present = set(dataset.data_vars) | set(dataset.encoding.get("skipped_variables", ()))
    missing = [name for name in ("softmax",) if name not in dataset.data_vars]
    missing += [name for name in ("layer",) if name not in dataset.coords]
    missing += [f"attribute {name}" for name in ("model", "target", "p0") if attr_text(dataset.attrs.get(name)) == ""]
    names = [attr_text(layer) for layer in dataset["layer"].values] if "layer" in dataset.coords else []
    missing += [f"variable {layer}" for layer in names if layer not in present]
    if not missing and wanted is not None and not wanted <= set(names):
        unknown = ", ".join(sorted(wanted - set(names)))
        raise ValueError(f"{path} holds no IFM of layer {unknown}; it has {', '.join(names)}")
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; expected {KINDS['ifms']}")
    try:
        target = float(dataset.attrs["target"])
        float(dataset.attrs["p0"])
        if not target.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}: target={dataset.attrs['target']!r} and p0={dataset.attrs['p0']!r} must be numbers; "
            f"expected {KINDS['ifms']}"
        ) from None
    if not 0 <= target < dataset["softmax"].size:
        raise ValueError(f"{path}: target {target:g} is not a class index in [0, {dataset['softmax'].size})")
    return dataset


def ifms_subset(dataset: xr.Dataset, layers: Collection[str]) -> xr.Dataset:
    """The IFM Dataset with only `layers`' IFMs, as read_ifms(path, layers=layers) reads them from its file."""
    names = [attr_text(layer) for layer in dataset["layer"].values]
    if not set(layers) <= set(names):
        unknown = ", ".join(sorted(set(layers) - set(names)))
        where = dataset.encoding.get("source") or "the IFMs"
        raise ValueError(f"{where} holds no IFM of layer {unknown}; it has {', '.join(names)}")
    skipped = [name for name in names if name not in set(layers)]
    subset = dataset.drop_vars([name for name in skipped if name in dataset.data_vars])
    subset.encoding = {**dataset.encoding, "skipped_variables": tuple(skipped)}
    return subset


def _other_ifm_variables(wanted: set[str]) -> Callable[[xr.Dataset], list[str]]:
    """skip for read_netcdf: the IFM variables (one per entry of the `layer` coordinate) of layers not wanted."""

    def skip(dataset: xr.Dataset) -> list[str]:
        layers = [attr_text(layer) for layer in dataset["layer"].values] if "layer" in dataset.coords else []
        return [layer for layer in layers if layer not in wanted]

    return skip


def read_sweep(path: str | Path) -> xr.Dataset:
    """One sweep file (one image, or several concatenated along `image`), checked to be one."""
    dataset = _read_kind(path, "sweep")
    missing = [name for name in ("probability",) if name not in dataset.data_vars]
    missing += [f"attribute {name}" for name in ("layer", "knob") if attr_text(dataset.attrs.get(name)) == ""]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; expected {KINDS['sweep']}")
    return dataset


def read_attack(path: str | Path) -> xr.Dataset:
    """One attack file, checked to be one: scores (parameter x metric), layer and knob present."""
    dataset = _read_kind(path, "attack")
    missing = [name for name in ("scores",) if name not in dataset.data_vars]
    missing += [f"attribute {name}" for name in ("layer", "knob", "p0") if attr_text(dataset.attrs.get(name)) == ""]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; expected {KINDS['attack']}")
    from ifmsan.steps.scores import check_attack_scores

    return check_attack_scores(dataset, source=str(path))  # a NaN or infinite score is named here, not judged


@contextlib.contextmanager
def all_or_none(*folders: str | Path) -> Iterator[list[Path]]:
    """Collect the outputs a command writes (append each after its atomic write); on failure remove them all,
    and each of `folders` that did not exist before and is empty again."""
    new_folders = [Path(folder) for folder in folders if not Path(folder).exists()]
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        for folder in new_folders:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def read_certify_maps(path: str | Path) -> xr.Dataset:
    """One certificate map file, checked to be one: g_hat and the held norms present, layer and image named."""
    dataset = _read_kind(path, "certify_maps")
    missing = [name for name in ("g_hat", "held_norm", "held_norm_se", "full_norm") if name not in dataset.data_vars]
    missing += [f"attribute {name}" for name in ("layer", "image_id") if attr_text(dataset.attrs.get(name)) == ""]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; expected {KINDS['certify_maps']}")
    from ifmsan.steps.scores import check_certify_maps

    return check_certify_maps(dataset, source=str(path))
