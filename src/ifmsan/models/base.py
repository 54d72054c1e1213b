"""LayeredNet: a CNN cut into a chain of stages at its IFMs, so any IFM can be read out, replaced, and run on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from PIL import Image

Stage = Callable[[torch.Tensor], torch.Tensor]


class LayeredNet(torch.nn.Module):
    """A classifier whose forward pass is a chain of stages; stage k maps the IFM of layer k to the IFM of layer k+1.

    The last stage maps the last IFM to the logits. Every method below is that chain run from some point on, so
    `forward_from(L, ifms(x)[L])` performs exactly the operations `forward(x)` performs after L: results are
    bitwise equal on a deterministic backend. The net is in eval mode after construction (dropout is identity);
    gradients are not switched off here: wrap calls in `torch.inference_mode()` where none are needed.
    """

    def __init__(
        self,
        *,
        name: str,
        class_names: Sequence[str],
        weights_info: Mapping[str, object],
        input_shape: tuple[int, ...],
        preprocess: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        """Record the metadata; a subclass builds its modules and then calls `_set_stages`."""
        super().__init__()
        self.name = name
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.weights_info: dict[str, object] = dict(weights_info)
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in input_shape)
        self._preprocess = preprocess
        self._layers: tuple[str, ...] = ()
        self._stages: list[Stage] = []
        self._index: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, ...]] | None = None

    def _set_stages(
        self, stages: Sequence[tuple[str, Stage]], *, shapes: Mapping[str, tuple[int, ...]] | None = None
    ) -> None:
        """Install the chain: (IFM name, callable from that IFM to the next IFM or, last, to the logits)."""
        names = tuple(name for name, _ in stages)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"{self.name}: IFM layer names must be unique and non-empty, got {names}")
        self._layers = names
        self._stages = [stage for _, stage in stages]
        self._index = {name: i for i, name in enumerate(names)}
        self._shapes = None if shapes is None else {name: tuple(shapes[name]) for name in names}

    @property
    def ifm_layers(self) -> tuple[str, ...]:
        """The layers whose IFMs can be read and replaced, in network order."""
        return self._layers

    def _position(self, name: str) -> int:
        """Index of a layer in the chain, or a ValueError that lists the valid names."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"{self.name} has no IFM layer {name!r}; valid layers: {', '.join(self._layers)}"
            ) from None

    def _check_batch(self, name: str, ifm_batch: torch.Tensor) -> None:
        """Reject an IFM batch whose per-image shape is not the layer's, before running anything."""
        if not isinstance(ifm_batch, torch.Tensor):
            raise ValueError(
                f"{self.name}: the IFM batch of {name!r} must be a torch.Tensor, got {type(ifm_batch).__name__}"
            )
        expected = self.ifm_shape(name)
        if tuple(ifm_batch.shape[1:]) != expected or ifm_batch.dim() != len(expected) + 1:
            raise ValueError(
                f"{self.name}: the IFM batch of {name!r} must have shape (batch, {', '.join(map(str, expected))}), "
                f"got {tuple(ifm_batch.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, classes) of a preprocessed input batch."""
        return self.forward_from(self._layers[0], x)

    def forward_from(self, name: str, ifm_batch: torch.Tensor, *, until: str | None = None) -> torch.Tensor:
        """Logits computed from a batch of IFMs of layer `name` on, or the IFMs of the later layer `until`.

        The input tensor is never modified. `forward_from(until, forward_from(name, x, until=until))` runs exactly
        the operations of `forward_from(name, x)`, so a caller may run the two parts with different batch sizes.
        """
        start = self._position(name)
        stop = len(self._stages) if until is None else self._position(until)
        if stop < start:
            raise ValueError(f"{self.name}: layer until={until!r} comes before {name!r}; expected a later IFM layer")
        self._check_batch(name, ifm_batch)
        out = ifm_batch
        for stage in self._stages[start:stop]:
            out = stage(out)
        return out

    def ifms_from(self, name: str, ifm_batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """IFM batches of `name` (the given tensor itself) and of every later layer, in network order."""
        start = self._position(name)
        self._check_batch(name, ifm_batch)
        result = {name: ifm_batch}
        out = ifm_batch
        for layer, stage in zip(self._layers[start + 1 :], self._stages[start:-1], strict=False):
            out = stage(out)
            result[layer] = out
        return result

    def ifms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """IFM batch of every layer for a preprocessed input batch (the first IFM is `x` itself)."""
        return self.ifms_from(self._layers[0], x)

    def layer_module(self, name: str) -> torch.nn.Module:
        """The module that consumes the IFM of `name`: its forward pre-hooks see (and may replace) that IFM."""
        stage = self._stages[self._position(name)]
        if not isinstance(stage, torch.nn.Module):
            raise ValueError(f"{self.name}: the stage fed by {name!r} is not a torch.nn.Module and cannot take hooks")
        return stage

    def ifm_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one image's IFM of `name` (no batch dimension)."""
        self._position(name)
        if self._shapes is None:
            self._shapes = self._probe_shapes()
        return self._shapes[name]

    def _probe_shapes(self) -> dict[str, tuple[int, ...]]:
        """Find every IFM shape by running one all-zero input through the chain once."""
        try:
            reference = next(self.parameters())
            device, dtype = reference.device, reference.dtype
        except StopIteration:
            device, dtype = torch.device("cpu"), torch.float32
        shapes = {self._layers[0]: self.input_shape}
        out = torch.zeros((1, *self.input_shape), device=device, dtype=dtype)
        with torch.no_grad():
            for layer, stage in zip(self._layers[1:], self._stages[:-1], strict=False):
                out = stage(out)
                shapes[layer] = tuple(out.shape[1:])
        return shapes

    def preprocess(self, image: Image.Image, *, source: str | None = None) -> torch.Tensor:
        """The model's own preprocessing of one PIL image: a float32 tensor of `input_shape`, no batch dimension.

        Images with a shorter side below preprocess.MIN_IMAGE_SIDE (32 px) are refused, naming `source`.
        """
        from ifmsan.models.preprocess import check_image_size

        if not isinstance(image, Image.Image):
            raise ValueError(f"{self.name}.preprocess expects a PIL.Image.Image, got {type(image).__name__}")
        name = source or getattr(image, "filename", "") or "(unnamed PIL image)"
        check_image_size(image, source=name, crop=self.input_shape[-1])
        return self._preprocess(image)

    def extra_repr(self) -> str:
        """Show the name and the IFM layers when the net is printed."""
        return f"name={self.name!r}, ifm_layers={self._layers}"
