"""Cut a traced classifier into a LayeredNet wherever one tensor carries all of the network's state.

The model is traced once (torch.fx; a model family may give its own tracer, e.g. timm's with its untraceable helpers
kept as leaves). A point between two operations is a *cut* when exactly one value computed from the input is still
needed afterwards: everything downstream is then a function of that one tensor, so running the rest of the graph
from it is exact (no hooks, no reruns of the prefix). By default an IFM is named after the outermost module that
starts at its cut, i.e. the module it is fed into; a cut into no new module (a functional `flatten`, the second call
of a shared module) is not exposed, and a family may choose its own names (`plan_stages(name_cut=...)`). The input
image is always the first IFM (named `input` when the first operation is not a module, e.g. ViT). Every in-place
operation is made out-of-place first (later readers of the mutated tensor read the new node), so IFMs handed out or
passed in are never overwritten.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ifmsan.models.base import LayeredNet

PROBE_BATCH = 2
NameCut = Callable[[Sequence[str]], "str | None"]
"""A naming policy: the module paths a cut enters (outermost first) -> the IFM's name, or None to not expose it."""

_OUT_OF_PLACE_OPERATORS: dict[Callable[..., Any], Callable[..., Any]] = {
    operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
    operator.itruediv: operator.truediv, operator.ifloordiv: operator.floordiv, operator.imod: operator.mod,
    operator.ipow: operator.pow, operator.iand: operator.and_, operator.ior: operator.or_,
    operator.ixor: operator.xor, operator.imatmul: operator.matmul,
}  # fmt: skip


def _make_out_of_place(model: nn.Module, graph: fx.Graph) -> None:
    """Make every in-place module, functional call, operator and method out-of-place, keeping the semantics.

    An in-place op's first argument holds the op's result afterwards, so later readers of that argument are
    pointed at the op's node (code such as `x.add_(b); return f(x)` stays correct).
    """
    rewritten: list[fx.Node] = []
    for node in graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(str(node.target))
            if getattr(module, "inplace", None) is True:
                rewritten.append(node)
        elif node.op == "call_function":
            if node.target in _OUT_OF_PLACE_OPERATORS:
                node.target = _OUT_OF_PLACE_OPERATORS[node.target]
                rewritten.append(node)
                continue
            if node.kwargs.get("inplace") is True:
                node.kwargs = {**node.kwargs, "inplace": False}
                rewritten.append(node)
            try:
                parameters = list(inspect.signature(node.target).parameters)
            except (TypeError, ValueError):
                continue
            if "inplace" in parameters:
                position = parameters.index("inplace")
                if position < len(node.args) and node.args[position] is True:
                    node.args = (*node.args[:position], False, *node.args[position + 1 :])
                    rewritten.append(node)
        elif node.op == "call_method" and str(node.target).endswith("_") and not str(node.target).startswith("_"):
            if not hasattr(torch.Tensor, str(node.target)[:-1]):
                raise ValueError(
                    f"in-place tensor method {node.target!r} has no out-of-place form; cannot cut this model"
                )
            node.target = str(node.target)[:-1]
            rewritten.append(node)
    for submodule in model.modules():
        if isinstance(getattr(submodule, "inplace", None), bool):
            setattr(submodule, "inplace", False)  # noqa: B010 (any module with an inplace flag, not one class)
    order = {node: i for i, node in enumerate(graph.nodes)}
    for node in rewritten:
        mutated = node.args[0] if node.args else None
        if isinstance(mutated, fx.Node):
            for user in list(mutated.users):
                if order[user] > order[node]:
                    user.replace_input_with(mutated, node)


def _probe(root: nn.Module, graph: fx.Graph, input_shape: tuple[int, ...]) -> dict[fx.Node, tuple[int, ...] | None]:
    """Run one all-zero batch through the graph and record each node's tensor shape (None for non-tensors)."""
    shapes: dict[fx.Node, tuple[int, ...] | None] = {}

    class Recorder(fx.Interpreter):
        """An interpreter that notes the shape of every value it computes."""

        def run_node(self, n: fx.Node) -> Any:
            """Run one node and record its output's shape."""
            result = super().run_node(n)
            shapes[n] = tuple(result.shape) if isinstance(result, torch.Tensor) else None
            return result

    with torch.no_grad():
        Recorder(fx.GraphModule(root, graph)).run(torch.zeros((PROBE_BATCH, *input_shape)))
    return shapes


def _dynamic_nodes(nodes: list[fx.Node]) -> set[fx.Node]:
    """Nodes whose value depends on the input (the rest, e.g. parameters, can be recomputed anywhere)."""
    dynamic: set[fx.Node] = set()
    for node in nodes:
        if node.op == "placeholder" or any(arg in dynamic for arg in node.all_input_nodes):
            dynamic.add(node)
    return dynamic


def outermost_module(entered: Sequence[str]) -> str | None:
    """The default naming policy: a cut is named after the outermost module it enters."""
    return entered[0] if entered else None


def find_cuts(
    graph: fx.Graph, shapes: dict[fx.Node, tuple[int, ...] | None], *, name_cut: NameCut = outermost_module
) -> list[tuple[str, fx.Node, str | None]]:
    """(name, value node, module the value enters first) for every exposed cut, in graph order; see the module doc."""
    nodes = [node for node in graph.nodes]
    placeholders = [node for node in nodes if node.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"the traced model takes {len(placeholders)} inputs; only single-input classifiers can be cut")
    dynamic = _dynamic_nodes(nodes)
    position = {node: i for i, node in enumerate(nodes)}
    last_use = {node: max((position[user] for user in node.users), default=-1) for node in dynamic}
    ordered = [node for node in nodes if node in dynamic and node.op != "output"]
    cuts: list[tuple[str, fx.Node, str | None]] = []
    seen: set[str] = set()
    live: set[fx.Node] = set()
    for k, node in enumerate(ordered[:-1]):
        i = position[node]
        if last_use[node] > i:
            live.add(node)
        live = {value for value in live if last_use[value] > i}
        if len(live) != 1:
            continue
        (value,) = live
        shape = shapes.get(value)
        if shape is None or len(shape) < 2 or shape[0] != PROBE_BATCH:
            continue
        following = ordered[k + 1]
        before = node.meta.get("nn_module_stack", {})
        after = following.meta.get("nn_module_stack", {})
        entered = [key for key in after if key not in before]
        leaf = str(following.target) if following.op == "call_module" else None
        # a key with "@" is a repeated call of a module already entered before: it starts nothing new
        named = name_cut([after[key][0] for key in entered]) if entered and "@" not in entered[0] else None
        if node.op == "placeholder":
            name = named or "input"
        elif named:
            name = named
        else:
            continue
        if name in seen or (cuts and cuts[-1][1] is value):  # one name per value (an assert can sit between)
            continue
        seen.add(name)
        cuts.append((name, value, leaf))
    return cuts


def _segment(nodes: Iterable[fx.Node], *, start: fx.Node, end: fx.Node, dynamic: set[fx.Node]) -> fx.Graph:
    """A graph from the cut value `start` to `end`, copying the input-independent nodes it needs."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: graph.placeholder("ifm")}

    def lookup(node: fx.Node) -> fx.Node:
        """The segment's copy of a node; input-independent nodes (parameters, constants) are copied on demand."""
        if node not in env:
            if node in dynamic:
                raise RuntimeError(f"value {node.name} crosses a cut; this is a bug in ifmsan.models.fxcut")
            env[node] = graph.node_copy(node, lookup)
        return env[node]

    for node in nodes:
        if node in dynamic and node not in env:
            env[node] = graph.node_copy(node, lookup)
    graph.output(lookup(end))
    graph.lint()
    return graph


def plan_stages(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    rename: dict[str, str] | None = None,
    tracer: fx.Tracer | None = None,
    name_cut: NameCut = outermost_module,
) -> tuple[list[tuple[str, fx.Graph]], dict[str, tuple[int, ...]]]:
    """Trace an eval-mode model and return its stage graphs (IFM name, graph to the next IFM or logits) and IFM shapes.

    `rename` (first module the IFM enters -> name) keeps only the cuts it names; `name_cut` names cuts otherwise.
    """
    model.eval()
    try:
        graph = (tracer or fx.Tracer()).trace(model)
    except Exception as exc:  # fx raises assorted errors for untraceable control flow
        raise ValueError(f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {exc})") from exc
    _make_out_of_place(model, graph)
    fx.GraphModule(model, graph).graph.eliminate_dead_code()  # DCE's purity check needs an owning module
    shapes = _probe(model, graph, input_shape)
    nodes = list(graph.nodes)
    output = nodes[-1]
    result = output.args[0]
    if not isinstance(result, fx.Node) or shapes.get(result) is None or len(shapes[result] or ()) != 2:
        raise ValueError(f"{type(model).__name__} does not return one (batch, classes) tensor in eval mode")
    cuts = find_cuts(graph, shapes, name_cut=name_cut)
    if rename is not None:
        cuts = [(rename[leaf], value, leaf) for name, value, leaf in cuts if leaf in rename]
    dynamic = _dynamic_nodes(nodes)
    position = {node: i for i, node in enumerate(nodes)}
    stages: list[tuple[str, fx.Graph]] = []
    for k, (name, value, _) in enumerate(cuts):
        end = cuts[k + 1][1] if k + 1 < len(cuts) else result
        span = nodes[position[value] + 1 : position[end] + 1]
        stages.append((name, _segment(span, start=value, end=end, dynamic=dynamic)))
    ifm_shapes = {name: tuple(shapes[value][1:]) for name, value, _ in cuts}  # type: ignore[index]
    return stages, ifm_shapes


class FxNet(LayeredNet):
    """A traced classifier (registered as `.model`, its own state-dict keys) run as a chain of fx stages."""

    def __init__(
        self,
        *,
        name: str,
        model: nn.Module,
        class_names: tuple[str, ...],
        weights_info: dict[str, object],
        input_shape: tuple[int, int, int],
        preprocess: Callable[[Any], torch.Tensor],
        rename: dict[str, str] | None = None,
        tracer: fx.Tracer | None = None,
        name_cut: NameCut = outermost_module,
    ) -> None:
        """Trace and cut `model` (made out-of-place, put in eval mode); see plan_stages for the naming options."""
        super().__init__(
            name=name,
            class_names=class_names,
            weights_info=weights_info,
            input_shape=input_shape,
            preprocess=preprocess,
        )
        self.model = model
        self._plan, self._plan_shapes = plan_stages(
            model, input_shape=input_shape, rename=rename, tracer=tracer, name_cut=name_cut
        )
        self._build_stages()
        self.eval()

    def _build_stages(self) -> None:
        """(Re)bind the stage graphs to the model's current parameters and buffers."""
        self._set_stages(
            [
                (name, fx.GraphModule(self.model, graph, class_name=f"Stage_{k}"))
                for k, (name, graph) in enumerate(self._plan)
            ],
            shapes=self._plan_shapes,
        )

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> FxNet:
        """Module.to()/.double()/... replace buffers; rebind the stages so they see the new ones."""
        result = super()._apply(fn, recurse)
        if "_plan" in self.__dict__:
            self._build_stages()
        return result
