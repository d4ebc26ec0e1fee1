"""Compressing a whole model: find its linear layers, calibrate them, swap in compressed weights.

Which subtrees hold linear maps is the model's word: a grouping `{group: [path]}` (see
`sandbox.nn.groups`; inferred from the names when not given). A linear layer is a dict under a
linear group holding a 2-D "w" (D_in, D_out), or a flax "kernel". Compression replaces its {"w"}
by {"u", "v"} (SVD: `sandbox.nn.linear.dense` then really multiplies by the thin matrices) or by a
new dense "w" (quantized or pruned); a bias is kept. A flax "kernel" gets the compressed matrix
back as a dense kernel (U V for SVD), so the flax module runs unchanged.
Calibration records, for every layer, the Gram matrix G = X^T X of its inputs and
their mean |x| per channel, which activation-aware SVD needs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sandbox.bayes import kfac
from sandbox.compress import prune, quantize, svd
from sandbox.errors import SandboxError
from sandbox.nn import groups as groups_lib


def linear_layers(params, groups: dict | None = None) -> dict:
    """{"block_0/attn/q": {"w": ...} or {"u", "v"}, (+ "b")}: every dense or factorized layer, by slash path."""
    roots = [tuple(p.split("/")) for p in groups_lib.linear_roots(groups or groups_lib.infer(params))]
    out = {}
    for k, leaf in traverse_util.flatten_dict(params).items():
        if k[-1] in groups_lib.WEIGHTS and np.ndim(leaf) == 2 and any(k[:len(r)] == r for r in roots):
            layer = _layer(params, k[:-1])
            out["/".join(map(str, k[:-1]))] = {"w": layer["kernel"]} if k[-1] == "kernel" else layer
    return out


def _layer(params, path):
    for name in path:
        params = params[name]
    return params


def replace_layers(params, new_layers: dict):
    """A copy of params with each named layer's weights replaced (its bias, if any, kept)."""
    flat = traverse_util.flatten_dict(params)
    for path, layer in new_layers.items():
        key = tuple(path.split("/"))
        if key + ("kernel",) in flat:  # a flax Dense: the compressed matrix as a dense kernel
            w = layer["w"] if "w" in layer else layer["u"] @ layer["v"]
            flat[key + ("kernel",)] = jnp.asarray(w, flat[key + ("kernel",)].dtype)
            continue
        for name in ("w", "u", "v"):
            flat.pop(key + (name,), None)
        flat.update({key + (name,): value for name, value in layer.items()})
    return traverse_util.unflatten_dict(flat)


def densify(params, groups: dict | None = None, rank_multiple: int | None = None):
    """A copy of params for scoring, the same function up to float rounding, computed on the host.

    rank_multiple None: every factorized layer {u, v} becomes the dense {w: u v}, in the original shapes, so
    one compiled model scores every rank. An int: a factorization that saves multiply-adds at its padded rank
    (k' (M + N) < M N) stays thin, zero-padded to k' = the next multiple (`pad_rank`), so one compiled
    program serves every rank of a bucket and runs at about the kept fraction of the dense cost.
    """
    out = {}
    for path, p in linear_layers(params, groups).items():
        if "u" not in p:
            continue
        u, v = np.asarray(p["u"]), np.asarray(p["v"])
        (m, k), n = u.shape, v.shape[1]
        padded = None if rank_multiple is None else -(-k // rank_multiple) * rank_multiple
        if padded is not None and padded * (m + n) < m * n:
            out[path] = {name: jax.device_put(x) for name, x in pad_rank(u, v, padded).items()}
        else:
            out[path] = {"w": jax.device_put(u @ v)}
    return replace_layers(params, out) if out else params


def pad_rank(u_MxK, v_KxN, rank: int) -> dict:
    """{"u": [u 0] (M, rank), "v": [v; 0] (rank, N)}: zero columns and rows add only exact zeros, so the
    padded product equals u v, and x u v is computed through the same thin shapes for any K <= rank."""
    k = u_MxK.shape[1]
    return {"u": np.pad(u_MxK, ((0, 0), (0, rank - k))), "v": np.pad(v_KxN, ((0, rank - k), (0, 0)))}


def param_count(layers: dict) -> int:
    """Stored weights of the layers (w, or u and v), without biases."""
    return sum(int(np.size(p[n])) for p in layers.values() for n in ("w", "u", "v") if n in p)


class _Probe:
    """Stands in for W in a traced forward pass: `x @ probe` keeps x (the layer's input rows), returns x @ W."""

    __array_priority__ = 1000  # so jax defers `x @ probe` to __rmatmul__

    def __init__(self, w, inputs: list):
        self.w, self.inputs = w, inputs

    def __rmatmul__(self, x):
        self.inputs.append(x.reshape(-1, x.shape[-1]))  # dense layers flatten (batch, position) first
        return x @ self.w


def _layer_inputs(forward, paths: tuple, params, batch) -> dict:
    """{path: [input rows of each call]} of one forward pass (jitted: one program per batch shape)."""
    seen = {path: [] for path in paths}
    probes = {path: {"w": _Probe(_layer(params, path.split("/"))["w"], seen[path])} for path in paths}
    forward(replace_layers(params, probes), batch)
    return seen


def calibrate(forward, params, batches, row_masks=None, groups: dict | None = None) -> dict:
    """{path: {"gram": X^T X, "abs_mean": mean |x| per input channel, "count": T}} over `batches`.

    X^T X is `sandbox.bayes.kfac.input_moment` of the layer's input rows: T times KFAC's input factor of the
    layer on the same rows, and half GPTQ's layer Hessian (`obs.layer_hessian`).

    `forward(params, batch)` runs under jit with stand-ins for the linear weights that hand out their
    inputs; the statistics are summed on the host in float64. `row_masks[i]` (B x L bool), if given,
    drops padding rows of batch i from the statistics.
    """
    layers = linear_layers(params, groups)
    if any(k + ("kernel",) in traverse_util.flatten_dict(params) for k in (tuple(p.split("/")) for p in layers)):
        raise SandboxError("calibration records inputs through `sandbox.nn.linear.dense` (x @ W); flax Dense "
                           "kernels are not seen that way: use svd, quantize or prune for this model")
    inputs = jax.jit(functools.partial(_layer_inputs, forward, tuple(layers)))
    stats = {path: {"gram": 0.0, "abs_sum": 0.0, "count": 0} for path in layers}
    for i, batch in enumerate(batches):
        mask = None if row_masks is None else np.asarray(row_masks[i], bool).reshape(-1)
        for path, calls in inputs(params, batch).items():
            for x in calls:
                rows = np.asarray(x, np.float64)
                rows = rows[mask] if mask is not None and rows.shape[0] == mask.size else rows
                s = stats[path]
                s["gram"], s["abs_sum"] = s["gram"] + kfac.input_moment(rows), s["abs_sum"] + np.abs(rows).sum(axis=0)
                s["count"] += rows.shape[0]
    return {
        path: {"gram": s["gram"], "abs_mean": s["abs_sum"] / s["count"], "count": s["count"]}
        for path, s in stats.items()
    }


def decompose(layers: dict, decomposition, stats=None) -> dict:
    """{path: decomposition(W as float32, stats[path] or None)}: each layer's (A, s, V^T), for `choose_ranks`."""
    return {path: decomposition(jnp.asarray(p["w"], jnp.float32), None if stats is None else stats[path])
            for path, p in layers.items()}


def choose_ranks(layers: dict, decompositions: dict, setting: dict) -> dict:
    """Ranks per layer from exactly one of {"rank": k}, {"fraction": f} (each layer keeps about f of its
    parameters), {"energy": e} (each keeps energy e) or {"budget": f} (global, `svd.ranks_for_budget`)."""
    shapes = {path: tuple(np.shape(p["w"])) for path, p in layers.items()}
    (kind, value), = setting.items()
    if kind == "budget":
        return svd.ranks_for_budget({p: np.asarray(d[1]) for p, d in decompositions.items()}, shapes, value)
    pick = {
        "rank": lambda p: svd.check_rank(value, shapes[p]),
        "fraction": lambda p: svd.rank_for_fraction(shapes[p], value),
        "energy": lambda p: svd.rank_for_energy(np.asarray(decompositions[p][1]), value),
    }
    if kind not in pick:
        raise SandboxError(f"SVD setting {kind!r} is unknown: choose rank, fraction, energy or budget")
    return {p: pick[kind](p) for p in layers}


def factorize(decompositions: dict, ranks: dict) -> dict:
    """{path: {"u", "v"}} at the given ranks."""
    return {path: svd.factors(dec, ranks[path]) for path, dec in decompositions.items()}


def quantize_layers(layers: dict, setting: dict) -> tuple[dict, float]:
    """({path: {"w": dequantized}}, mean bits per weight) for {"bits", "symmetric", "granularity",
    "group_size"} (RTN) or {"dtype": "bfloat16"|"float16"} (a cast)."""
    out, bits = {}, 0.0
    for path, p in layers.items():
        if "dtype" in setting:
            q = quantize.cast(p["w"], setting["dtype"])
        else:
            q = quantize.quantize(p["w"], **setting)
        out[path] = {"w": q["w"]}
        bits += q["bits_per_weight"] * np.size(p["w"])
    return out, bits / param_count(layers)


def prune_layers(layers: dict, setting: dict, ranks: dict | None = None) -> dict:
    """{path: {"w": pruned}} for {"sparsity": s} (magnitude; `ranks[path]` from `prune.magnitude_ranks` if
    given) or {"n": n, "m": m} (N:M)."""
    if "sparsity" in setting:
        ranks = ranks or {}
        return {path: {"w": prune.magnitude_prune(p["w"], setting["sparsity"], ranks.get(path))["w"]}
                for path, p in layers.items()}
    return {path: {"w": prune.nm_prune(p["w"], setting["n"], setting["m"])["w"]} for path, p in layers.items()}
