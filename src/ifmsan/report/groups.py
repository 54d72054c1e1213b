"""Class groups of images: which group each image of a γ summary belongs to, read from a file and checked."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

ALL_IMAGES = "all"
"""The `group` of the summary rows over every image; no class group may take this name."""


def check_groups(groups: Mapping[str, str], image_ids: Sequence[str]) -> dict[str, str]:
    """The image id -> class group mapping restricted to `image_ids`, or a ValueError: every image needs a group,
    each a non-empty string other than "all" (ALL_IMAGES)."""
    missing_ids = [image for image in dict.fromkeys(image_ids) if image not in groups]
    if missing_ids:
        shown = ", ".join(map(repr, missing_ids[:5])) + (", ..." if len(missing_ids) > 5 else "")
        raise ValueError(
            f"image groups: {len(missing_ids)} image(s) of the report have no group: {shown}; give every image a "
            "group (or no groups at all)"
        )
    for image in dict.fromkeys(image_ids):
        group = groups[image]
        if not isinstance(group, str) or not group.strip():
            raise ValueError(f"image groups: image {image!r} has the group {group!r}; expected a non-empty name")
        if group == ALL_IMAGES:
            raise ValueError(
                f"image groups: image {image!r} has the group {ALL_IMAGES!r}, which names the rows over every image; "
                "choose another name"
            )
    return {image: groups[image] for image in dict.fromkeys(image_ids)}


def load_image_groups(path: str | os.PathLike[str]) -> dict[str, str]:
    """Image id -> class group from a YAML (or JSON) file: a mapping {image_id: group}, or a workflow config whose
    images carry a `group` (e.g. config/imagenet1000.yaml); a ValueError names what is wrong."""
    import yaml

    where = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(data, Mapping) and "images" in data and isinstance(data["images"], list):
        groups: dict[str, str] = {}
        for i, image in enumerate(data["images"]):
            if not isinstance(image, Mapping) or "id" not in image:
                raise ValueError(f"{where}: images[{i}] is not an image entry with an id")
            if "group" not in image:
                raise ValueError(f"{where}: images[{i}] ({image['id']!r}) has no group; give every image a group")
            if not isinstance(image["group"], str):  # never repr'd: a YAML alias can make it astronomically large
                raise ValueError(
                    f"{where}: images[{i}] ({str(image['id'])[:80]!r}) has a group of type {type(image['group']).__name__};"
                    " expected a group name (a string)"
                )
            groups[str(image["id"])] = image["group"]
        if not groups:
            raise ValueError(f"{where}: the config lists no images")
        return groups
    if isinstance(data, Mapping) and data and all(isinstance(v, str) for v in data.values()):
        return {str(key): value for key, value in data.items()}
    if isinstance(data, Mapping) and data:
        key, value = next((k, v) for k, v in data.items() if not isinstance(v, str))
        raise ValueError(
            f"{where}: image {str(key)[:80]!r} has a group of type {type(value).__name__}; expected a mapping "
            "image_id: group name (a string), or a workflow config whose images have a group"
        )
    raise ValueError(
        f"{where}: expected a mapping image_id: group, or a workflow config whose images have a group; got "
        f"{type(data).__name__}"
    )


__all__ = ["ALL_IMAGES", "check_groups", "load_image_groups"]
