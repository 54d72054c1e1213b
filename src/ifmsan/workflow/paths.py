"""Where the workflow reads and writes a config's files: URL images, weights, the mean file, converted weights."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ifmsan.steps.fetch import URL_SCHEMES


def is_url(source: str) -> bool:
    """True for the image sources the workflow downloads (http, https, file URLs)."""
    return source.split("://", 1)[0].lower() in URL_SCHEMES


def image_file(image: Mapping[str, Any]) -> str | None:
    """Where an image's bytes are read: data/images/<id><suffix> for URLs, the path itself, or None if generated."""
    source = image["source"]
    if is_url(source):
        suffix = Path(urllib.parse.urlsplit(source).path).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".img"
        return f"data/images/{image['id']}{suffix}"
    if source.startswith(("skimage:", "minidata:")):
        return None
    return source


def is_download(entry: Any) -> bool:
    """True for a weights or mean_file entry that the workflow fetches ({url, sha256 or sha1, file})."""
    return isinstance(entry, Mapping) and "url" in entry


def file_entry_path(entry: Mapping[str, Any]) -> str:
    """The local file of a weights or mean_file entry: data/<file> for downloads, else the given path."""
    return f"data/{entry['file']}" if is_download(entry) else str(entry["path"])


def converted_weights_path(model: Mapping[str, Any]) -> str | None:
    """The .safetensors file the workflow converts bvlc_alexnet's caffemodel into, once, for every job to load
    (ifmsan.models.converted): the weights file's folder and stem; None for other models and weights."""
    from ifmsan.models.converted import SUFFIX, converted_path

    weights = model.get("weights")
    if model.get("name") != "bvlc_alexnet" or not isinstance(weights, Mapping):
        return None
    path = file_entry_path(weights)
    return None if path.endswith(SUFFIX) else str(converted_path(path))  # the config check refuses such an entry


__all__ = ["converted_weights_path", "file_entry_path", "image_file", "is_download", "is_url"]
