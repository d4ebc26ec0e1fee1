"""Error analysis of the LLM's own operations, naive against stable, in each format against float64.

Naive softmax exp(x)/sum exp(x) overflows once max x > ln(largest finite) (11.09 in float16, 88.7 in
bfloat16/float32); the stable form exp(x - max x)/sum exp(x - max x) never does, and logsumexp /
cross-entropy inherit the same fix (m + log sum exp(x - m)). Layer norm's one-pass variance
E[x²] - E[x]² cancels catastrophically when |mean| >> std; the two-pass E[(x - mean)²] does not.
Every operation runs entirely in the format (inputs first rounded to it) and is compared with the
float64 computation on the same rounded inputs, so the error measured is the algorithm's, not the
input's. Summation: naive left-to-right, pairwise and Kahan sums against the bounds (n-1)u,
ceil(log2 n)u and 2u (first order, times sum|x|).
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.numerics import formats, rounding


def softmax(x, stable: bool):
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True)) if stable else jnp.exp(x)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def logsumexp(x, stable: bool):
    if not stable:
        return jnp.log(jnp.sum(jnp.exp(x), axis=-1))
    m = jnp.max(x, axis=-1)
    return m + jnp.log(jnp.sum(jnp.exp(x - m[..., None]), axis=-1))


def cross_entropy(x, target, stable: bool):
    """-log p_target: naive through the probabilities, stable as logsumexp(x) - x_target."""
    if not stable:
        return -jnp.log(jnp.take_along_axis(softmax(x, False), target[..., None], axis=-1)[..., 0])
    return logsumexp(x, True) - jnp.take_along_axis(x, target[..., None], axis=-1)[..., 0]


def layer_norm(x, stable: bool, eps: float = 1e-5):
    """(x - mean)/sqrt(var + eps) with var one-pass E[x²] - E[x]² (naive) or two-pass E[(x - mean)²]."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, -1, keepdims=True) if stable else jnp.mean(x * x, -1, keepdims=True) - mean**2
    return (x - mean) / jnp.sqrt(jnp.maximum(var, 0) + jnp.asarray(eps, x.dtype))


def attention(q_BxLxD, k_BxLxD, v_BxLxD, stable: bool):
    """softmax(q k^T / sqrt(D)) v, with the naive or the stable softmax."""
    s_BxLxL = jnp.einsum("bld,bmd->blm", q_BxLxD, k_BxLxD) / jnp.sqrt(jnp.asarray(q_BxLxD.shape[-1], q_BxLxD.dtype))
    return jnp.einsum("blm,bmd->bld", softmax(s_BxLxL, stable), v_BxLxD)


def _inputs(key, logit_scale: float, ln_offset: float) -> dict:
    """float32 inputs: logits ~ N(0, scale²) (R=64 rows, V=512); LN rows offset + N(0,1); attention q,k,v."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    logits = logit_scale * jax.random.normal(k1, (64, 512))
    return {"logits": logits, "targets": jax.random.randint(k2, (64,), 0, 512),
            "ln": ln_offset + jax.random.normal(k3, (64, 256)),
            "qkv": logit_scale ** 0.5 * jax.random.normal(k4, (3, 8, 32, 64))}


_jit = lambda fn: jax.jit(fn, static_argnums=1)
OPS = {
    "softmax": _jit(lambda d, s: softmax(d["logits"], s)),
    "logsumexp": _jit(lambda d, s: logsumexp(d["logits"], s)),
    "cross_entropy": _jit(lambda d, s: cross_entropy(d["logits"], d["targets"], s)),
    "layer_norm": _jit(lambda d, s: layer_norm(d["ln"], s)),
    "attention": _jit(lambda d, s: attention(*d["qkv"], s)),
}


def _rowwise_error(approx, exact) -> np.ndarray:
    """Normwise relative error per row: max|a - e| / max|e| over the last axis (plain for scalars)."""
    a, e = np.asarray(approx, np.float64), np.asarray(exact, np.float64)
    if e.ndim == 1:
        return rounding.relative_error(a, e)
    a, e = a.reshape(-1, e.shape[-1]), e.reshape(-1, e.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(a - e).max(-1) / np.abs(e).max(-1)


def op_errors(names=formats.NAMES[1:], logit_scale: float = 8.0, ln_offset: float = 300.0, seed: int = 0) -> list[dict]:
    """Per op, format and form: max and median relative error over finite rows, and the non-finite fraction."""
    data32 = _inputs(jax.random.PRNGKey(seed), logit_scale, ln_offset)
    rows = []
    for name in names:
        dt = formats.dtype(name)
        data = {k: v if v.dtype.kind == "i" else v.astype(dt) for k, v in data32.items()}
        with jax.enable_x64(True):
            data64 = {k: np.asarray(v, np.int64 if v.dtype.kind == "i" else np.float64) for k, v in data.items()}
            exact = {op: np.asarray(fn({k: jnp.asarray(v) for k, v in data64.items()}, True)) for op, fn in OPS.items()}
        for op, fn in OPS.items():
            for stable in (False, True):
                err = _rowwise_error(fn(data, stable), exact[op])
                finite = err[np.isfinite(err)]
                rows.append({"op": op, "format": name, "form": "stable" if stable else "naive",
                             "max_rel_error": float(finite.max()) if finite.size else None,
                             "median_rel_error": float(np.median(finite)) if finite.size else None,
                             "nonfinite_fraction": float(1 - finite.size / err.size)})
    return rows


def overflow_point(name: str, op: str = "logsumexp", stable: bool = False) -> float | None:
    """Smallest representable max-logit m at which `op` of [m, 0, ..., 0] is not finite (None: never up to 800)."""
    dt = formats.dtype(name)
    m = np.unique(np.linspace(0.0, 800.0, 160001).astype(dt).astype(np.float64))
    m = m[m <= formats.describe(name).largest_finite]
    x = np.zeros((m.size, 8))
    x[:, 0] = m
    batch = {"logits": jnp.asarray(x.astype(dt)), "targets": jnp.zeros(m.size, jnp.int32)}
    out = np.asarray(OPS[op](batch, stable), np.float64)
    bad = ~np.isfinite(out.reshape(m.size, -1)).all(-1)
    return float(m[bad.argmax()]) if bad.any() else None


def overflow_table(names=formats.NAMES[1:]) -> list[dict]:
    """Per format: where naive logsumexp/softmax overflow, against the theory ln(largest finite)."""
    return [{"format": n, "theory_ln_largest": float(np.log(formats.describe(n).largest_finite)),
             "naive_logsumexp": overflow_point(n, "logsumexp"), "naive_softmax": overflow_point(n, "softmax"),
             "stable_logsumexp": overflow_point(n, "logsumexp", stable=True)} for n in names]


def summation_errors(name: str, sizes=(10, 100, 1000, 10_000, 100_000), seed: int = 0) -> list[dict]:
    """Relative errors of naive / pairwise / Kahan sums of n uniform(0,1) numbers of format `name` vs their bounds.

    The terms are positive, so sum|x| = |sum x| and the bounds are relative errors directly.
    """
    u = formats.describe(name).unit_roundoff
    rows = []
    for n in sizes:
        x = jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(seed), n), (n,)).astype(formats.dtype(name))
        exact = np.asarray(x, np.float64).sum()
        sums = {"naive": rounding.sequential_sum(x), "pairwise": rounding.pairwise_sum(x),
                "kahan": rounding.kahan_sum(x)}
        rows.append({"format": name, "n": n, **{k: float(rounding.relative_error(v, exact)) for k, v in sums.items()},
                     "bound_naive": (n - 1) * u, "bound_pairwise": int(np.ceil(np.log2(n))) * u,
                     "bound_kahan": 2 * u + n * u * u})
    return rows


def plot_errors(rows: list[dict], sums: list[dict], path) -> str:
    """Figure: median relative error per op and format (naive vs stable); summation error vs n with bounds."""
    from sandbox.plotting import figure, save

    fig, (left, right) = figure(11.0, 4.2, ncols=2)
    names = list(dict.fromkeys(r["format"] for r in rows))
    ops = list(OPS)
    width = 0.8 / (2 * len(names))
    for j, name in enumerate(names):
        for form, hatch in (("naive", "//"), ("stable", "")):
            vals = [next((r["median_rel_error"] for r in rows if r["op"] == op and r["format"] == name
                          and r["form"] == form), None) or np.nan for op in ops]
            pos = np.arange(len(ops)) + (2 * j + (form == "stable")) * width - 0.4
            left.bar(pos, vals, width, color=f"C{j}", hatch=hatch, alpha=0.8,
                     label=f"{name}" if form == "stable" else None)
    left.set_yscale("log")
    left.set_xticks(range(len(ops)), ops, fontsize=8)
    left.set_ylabel("median relative error vs float64")
    left.set_title("Naive (hatched) vs stable; a missing bar: all rows overflowed")
    left.legend(fontsize=7, ncol=2)
    for j, name in enumerate(dict.fromkeys(r["format"] for r in sums)):
        rs = [r for r in sums if r["format"] == name]
        n = [r["n"] for r in rs]
        for method, style in (("naive", "o-"), ("pairwise", "s--"), ("kahan", "^:")):
            right.loglog(n, [max(r[method], 1e-12) for r in rs], style, color=f"C{j}", ms=4,
                         label=f"{name} {method}")
        right.loglog(n, [r["bound_kahan"] for r in rs], "-", color=f"C{j}", lw=0.6, alpha=0.6)
    right.set_xlabel("number of terms n")
    right.set_ylabel("relative error of the sum (floor 1e-12)")
    right.set_title("Summation error; thin lines: Kahan bound 2u + n u²")
    right.legend(fontsize=6, ncol=2)
    return save(fig, path)
