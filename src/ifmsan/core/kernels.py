"""The sanitizer's fused CPU path: numba kernels (optional) that give the torch path's results bit for bit, faster.

`ifmsan.core.sanitize` keeps the API and the torch reference path and calls `sweep_with_kernels` where `kernel_applies`.
Same results as the torch path bit for bit (tests/test_sanitize_fast.py): the held value is always one of the samples,
chosen with the same float64 mean and distances, so only the work is organised differently.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ifmsan._shared.jit import drain_in_threads, numba_compile

KERNEL_MODES: dict[str, int] = {"nonzero_mean": 0, "first": 1, "random": 2}
_FAR = 1e300
"""Stands in for a zero sample in the distance pass: farther from any float32 window mean than every nonzero sample."""
_EXACT = 2**53
"""Below this many units every partial sum of a window is an exact float64, so any summation order gives the same sum."""
PARALLEL_MIN_SAMPLES = 1 << 14
"""IFMs from this many samples on share their window sizes among torch's threads; smaller ones are not worth a thread."""
LANES = 8
"""Samples per vector step of the distance pass (8 float64: one AVX-512 register, two AVX2 ones)."""
VECTOR_MIN_WINDOW = 16
"""Windows from this many samples on take the vector distance pass; shorter ones the scalar loop, which is faster there."""
GROUPS_PER_WORKER = 4
"""The window sizes of a call are handed to the threads in about this many groups per thread: few calls into the
kernel (each costs the GIL a moment), enough groups that a thread the OS holds back delays the others little."""
KERNEL_MIN_WORK = 1 << 22
"""Samples × window sizes from which a call loads the compiled kernels (a cost paid once per process); smaller calls
take the torch path until they are loaded, so short jobs on small IFMs do not pay for them."""


def stream_tables(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, int]:
    """Per-stream tables that make each window's nonzero count and (when exact) sum an O(1) lookup.

    Every nonzero float32 is an integer multiple of `unit`, the spacing of the smallest binade present; `sums` and
    `magnitudes` are prefix sums of those integers (wrapping int64: window differences stay exact), `counts` is the
    prefix count of nonzeros, and `near` is the stream in float64 with zeros moved out of reach (_FAR), padded with
    2 x LANES more _FAR so that the vector distance pass may read whole vectors past a window's last sample.
    """
    size = x.shape[0]
    bits = x.view(np.uint32)
    lowest, highest = 255, 1
    for i in range(size):
        magnitude = np.int64(bits[i]) & 0x7FFFFFFF
        if magnitude != 0:
            exponent = max(magnitude >> 23, 1)
            lowest = min(lowest, exponent)
            highest = max(highest, exponent)
    lowest = min(lowest, highest)
    near = np.full(size + 2 * LANES, _FAR)
    sums = np.empty(size + 1, np.int64)
    magnitudes = np.empty(size + 1, np.int64)
    counts = np.empty(size + 1, np.int64)
    sums[0] = magnitudes[0] = counts[0] = 0
    for i in range(size):
        word = np.int64(bits[i])
        magnitude = word & 0x7FFFFFFF
        units = np.int64(0)
        if magnitude != 0:
            exponent = magnitude >> 23
            significand = (magnitude & 0x7FFFFF) | (0x800000 if exponent > 0 else 0)
            units = significand << min(max(exponent, 1) - lowest, 31)
        sums[i + 1] = sums[i] + (-units if word >> 31 else units)
        magnitudes[i + 1] = magnitudes[i] + units
        counts[i + 1] = counts[i] + (magnitude != 0)
        near[i] = np.float64(x[i]) if magnitude != 0 else _FAR
    return near, sums, magnitudes, counts, math.ldexp(1.0, lowest - 150), highest - lowest


def hold_windows(
    x: np.ndarray,
    near: np.ndarray,
    sums: np.ndarray,
    magnitudes: np.ndarray,
    counts: np.ndarray,
    unit: float,
    spread: int,
    windows: np.ndarray,
    mode: int,
    picks: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write each window size's sanitized stream into its row of out: per window, pick the held sample and fill."""
    size = x.shape[0]
    if out.shape[0] < windows.shape[0] or out.shape[1] < size or near.shape[0] < size + 2 * LANES:
        raise ValueError("hold_windows: out needs a row of the stream's length per window, near the padded stream")
    pick = 0
    for row in range(windows.shape[0]):
        window = windows[row]
        bit_length = 0
        while window >> bit_length:
            bit_length += 1
        lookup = spread <= 31 and 24 + spread + bit_length <= 62  # no window's units can wrap past int64
        target = out[row]
        for start in range(0, size, window):
            stop = min(start + window, size)
            held = start
            if mode == 2:
                held = start + picks[pick]
                pick += 1
            elif mode == 0:
                count = counts[stop] - counts[start]
                if count == 0:
                    target[start:stop] = x[start:stop]
                    continue
                if lookup and magnitudes[stop] - magnitudes[start] < _EXACT:
                    total = np.float64(sums[stop] - sums[start]) * unit
                else:
                    total = 0.0
                    for i in range(start, stop):
                        total += np.float64(x[i])
                mean = total / count
                if stop - start >= VECTOR_MIN_WINDOW:
                    held = start + nearest(near, start, stop - start, mean)
                else:
                    best = np.inf
                    base = np.uint64(start)
                    for j in range(stop - start):
                        distance = abs(near[base + np.uint64(j)] - mean)
                        closer = distance < best
                        held = start + j if closer else held
                        best = distance if closer else best
            target[start:stop] = x[held]


def nearest(near: np.ndarray, start: int, length: int, mean: float) -> int:
    """Offset of the first of near[start:start + length] closest to mean; compiled code gets the vector form."""
    distances = np.abs(near[start : start + length] - mean)
    return int(np.argmin(distances))  # argmin keeps the first of equal distances


def register_vector_nearest() -> None:
    """Give compiled code a vector `nearest`, a numba intrinsic (the compiler does not vectorize an argmin itself).

    Two chains of LANES samples per step turn distances into int64 keys (|d| as float64 bits orders like |d| as an
    int64, ties included) and keep each lane's first smallest key and its offset; then the smallest key over the lanes,
    and the smallest offset among the lanes that hold it: the first of the closest samples, branch-free. It reads up to
    2 x LANES - 1 samples past the window (the padding of `near`) and keys them out.
    """
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic, overload

    i32, i64, f64 = ir.IntType(32), ir.IntType(64), ir.DoubleType()
    vf, vi = ir.VectorType(f64, LANES), ir.VectorType(i64, LANES)
    far = ir.Constant(vi, [2**63 - 1] * LANES)  # also the mask that clears the sign bit
    lanes = ir.Constant(vi, list(range(LANES)))

    def splat(builder: ir.IRBuilder, value: ir.Value, vector: ir.VectorType) -> ir.Value:
        """The scalar in every lane."""
        first = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(i32, 0))
        return builder.shuffle_vector(
            first, ir.Constant(vector, ir.Undefined), ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
        )

    def reduce(builder: ir.IRBuilder, operation: str, vector: ir.Value) -> ir.Value:
        """LLVM's horizontal reduction of an int64 vector (smin or umin)."""
        name = f"llvm.vector.reduce.{operation}.v{LANES}i64"
        function = builder.module.globals.get(name) or ir.Function(
            builder.module, ir.FunctionType(i64, [vi]), name=name
        )
        return builder.call(function, [vector])

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Sequence[ir.Value]) -> ir.Value:
        """Emit the pass: two vectors per step over the window (two chains), their merge, then the lanes' merge."""
        array, start, length, mean = args
        base = builder.gep(context.make_array(signature.args[0])(context, builder, array).data, [start])
        means, lengths = splat(builder, mean, vf), splat(builder, length, vi)

        def step(offset_vector: ir.Value, keys: ir.Value, offsets: ir.Value) -> tuple[ir.Value, ir.Value]:
            """One vector of distances: keys out lanes past the window, keep each lane's first smallest key."""
            first = builder.extract_element(offset_vector, ir.Constant(i32, 0))
            values = builder.load(builder.bitcast(builder.gep(base, [first]), vf.as_pointer()), align=8)
            step_keys = builder.and_(builder.bitcast(builder.fsub(values, means), vi), far)
            step_keys = builder.select(builder.icmp_signed("<", offset_vector, lengths), step_keys, far)
            closer = builder.icmp_signed("<", step_keys, keys)  # strictly: a lane keeps its first smallest key
            return builder.select(closer, step_keys, keys), builder.select(closer, offset_vector, offsets)

        entry = builder.block
        loop, done = builder.append_basic_block("nearest.loop"), builder.append_basic_block("nearest.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        offset_a, keys_a, offsets_a = builder.phi(vi), builder.phi(vi), builder.phi(vi)
        keys_b, offsets_b = builder.phi(vi), builder.phi(vi)
        new_a = step(offset_a, keys_a, offsets_a)
        offset_b = builder.add(offset_a, ir.Constant(vi, [LANES] * LANES))
        new_b = step(offset_b, keys_b, offsets_b)
        next_a = builder.add(offset_a, ir.Constant(vi, [2 * LANES] * LANES))
        for phi, first_value, looped in (
            (offset_a, lanes, next_a),
            (keys_a, far, new_a[0]),
            (offsets_a, lanes, new_a[1]),
            (keys_b, far, new_b[0]),
            (offsets_b, lanes, new_b[1]),
        ):
            phi.add_incoming(first_value, entry)
            phi.add_incoming(looped, loop)
        next_first = builder.extract_element(next_a, ir.Constant(i32, 0))
        builder.cbranch(builder.icmp_signed("<", next_first, length), loop, done)
        builder.position_at_end(done)
        (keys_a, offsets_a), (keys_b, offsets_b) = new_a, new_b
        nearer = builder.select(builder.icmp_signed("<", keys_b, keys_a), keys_b, keys_a)
        smallest = splat(builder, reduce(builder, "smin", nearer), vi)
        candidates_a = builder.select(builder.icmp_signed("==", keys_a, smallest), offsets_a, far)
        candidates_b = builder.select(builder.icmp_signed("==", keys_b, smallest), offsets_b, far)
        first = builder.select(builder.icmp_unsigned("<", candidates_b, candidates_a), candidates_b, candidates_a)
        return reduce(builder, "umin", first)  # the smallest offset among the lanes that hold the smallest key

    @intrinsic
    def vector_form(typingctx: Any, near: Any, start: Any, length: Any, mean: Any) -> Any:
        """Typed for a C-contiguous float64 array, int64 start and length, float64 mean."""
        if not (isinstance(near, types.Array) and near.dtype == types.float64 and near.layout == "C"):
            return None
        return types.int64(near, types.int64, types.int64, types.float64), codegen

    @overload(nearest)
    def compiled_nearest(near, start, length, mean):  # numba wants the same parameters as `nearest`, unannotated
        """What hold_windows calls once compiled."""
        return lambda near, start, length, mean: vector_form(near, start, length, mean)


@functools.cache
def compiled_kernels() -> tuple[Callable[..., tuple], Callable[..., None]] | None:
    """The two kernels compiled by numba (cached on disk), or None where numba is not installed or IFMSAN_NO_NUMBA is set.

    The vector `nearest` lives in this module so that numba's disk cache, keyed on this file, sees its changes.
    """
    kernels = numba_compile(stream_tables, hold_windows)
    if kernels is None:
        return None
    register_vector_nearest()  # before the first call compiles (or loads) hold_windows
    return (kernels[0], kernels[1])


def kernel_pays(work: int) -> bool:
    """Whether a call of this size should use (and if need be load) the compiled kernels."""
    return work >= KERNEL_MIN_WORK or compiled_kernels.cache_info().currsize > 0


def kernel_applies(tensor: torch.Tensor, select: str) -> bool:
    """Whether the fused CPU path covers this call; the window mean of baseline `mean` stays on the torch path."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32 and select in KERNEL_MODES


def sweep_with_kernels(
    kernels: tuple[Callable[..., tuple], Callable[..., None]],
    tensor: torch.Tensor,
    sizes: Sequence[int],
    *,
    select: str,
    seed: int,
    flat_out: torch.Tensor,
) -> None:
    """Run the fused path for every window size; large IFMs spread the sizes over torch's CPU threads (no GIL held)."""
    stream_tables, hold_windows = kernels
    x = tensor.detach().reshape(-1).contiguous().numpy()
    tables = cached_tables(stream_tables, x)
    rows = flat_out.detach().numpy()
    windows = np.asarray([min(w, x.shape[0]) for w in sizes], dtype=np.int64)  # past the stream = one window
    mode = KERNEL_MODES[select]

    def picks(first: int, stop: int) -> np.ndarray:
        """The random selector's picks for rows first..stop-1, concatenated (a placeholder for the other modes)."""
        if mode != 2:
            return np.zeros(1, dtype=np.int64)
        return np.concatenate([random_indices_np(x.shape[0], window=w, seed=seed) for w in sizes[first:stop]])

    workers = min(torch.get_num_threads(), len(sizes)) if x.shape[0] >= PARALLEL_MIN_SAMPLES else 1
    if workers <= 1:
        hold_windows(x, *tables, windows, mode, picks(0, len(sizes)), rows)
        return

    group = -(-len(sizes) // (workers * GROUPS_PER_WORKER))

    def hold_group(item: int) -> None:
        """A few consecutive window sizes into their rows of the output."""
        first, stop = item * group, min((item + 1) * group, len(sizes))
        hold_windows(x, *tables, windows[first:stop], mode, picks(first, stop), rows[first:stop])

    drain_in_threads(hold_group, -(-len(sizes) // group), workers=workers)


_TABLES = threading.local()
"""Per thread, the last stream and its tables: a sweep sanitizes one IFM in several batches of window sizes."""


def cached_tables(stream_tables: Callable[..., tuple], x: np.ndarray) -> tuple:
    """stream_tables(x), reused when x holds exactly the bits of this thread's previous stream (checked, not assumed)."""
    previous = getattr(_TABLES, "entry", None)
    if (
        previous is not None
        and previous[0].shape == x.shape
        and np.array_equal(previous[0].view(np.uint32), x.view(np.uint32))
    ):
        return previous[1]
    tables = stream_tables(x)
    _TABLES.entry = (x.copy(), tables)
    return tables


def random_indices_np(size: int, *, window: int, seed: int) -> np.ndarray:
    """The same picks as ifmsan.core.sanitize._random_indices, for a stream of `size` samples, as numpy."""
    span = min(window, size)
    lengths = np.full(-(-size // span), span, dtype=np.int64)
    lengths[-1] = size - (lengths.shape[0] - 1) * span
    return np.random.default_rng([seed, window]).integers(0, lengths)
