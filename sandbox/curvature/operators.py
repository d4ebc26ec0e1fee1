"""Curvature operators of a loss: Hessian, generalized Gauss-Newton, empirical and MC Fisher.

Every constructor takes `params` (any pytree) and `batch`; `batch` may be a Python `list` of
batches (a dataset), and the operator is then the mean over the batches (equal weights; stacked
and scanned when the batches share shapes, so memory stays one batch). A tuple or dict is one
batch. Vectors are flat (see `linop.LinearOperator`).

- Hessian   H v = d/dt grad L(w + t v)              (forward-over-reverse, one jvp of the grad)
- GGN       G v = J^T H_l J v, L = l(f(w, x), y)    (jvp, a Hessian-vector product in output space,
                                                    then the transpose of the same linearization)
- Fisher    F v = J^T M J v with M = (1/N) sum_i g_i g_i^T per output row i (N rows, classes on
            the last axis): empirical, g_i = grad of row i's loss at the data labels; Monte-Carlo,
            g_i = softmax(z_i) - onehot(y), y ~ softmax(z_i) (the sampled true Fisher, -> GGN).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sandbox.curvature.linop import Layout, LinearOperator
from sandbox.errors import SandboxError


def hessian(loss_fn: Callable, params, batch) -> LinearOperator:
    """Hessian of `loss_fn(params, batch) -> scalar` at `params`, averaged over a list of batches."""
    _check_scalar(loss_fn, params, _first(batch))
    return from_rule(_Hvp(loss_fn), params, batch)


def ggn(model_fn: Callable, output_loss_fn: Callable, params, batch) -> LinearOperator:
    """GGN J^T H_l J of L(w) = output_loss_fn(model_fn(w, batch), batch); PSD for convex l."""
    _check_scalar(lambda p, b: output_loss_fn(model_fn(p, b), b), params, _first(batch))
    return from_rule(_Ggn(model_fn, output_loss_fn), params, batch)


def fisher(model_fn: Callable, params, batch, *, output_loss_fn: Callable | None = None,
           kind: str = "empirical", key: jax.Array | None = None,
           num_samples: int = 1) -> LinearOperator:
    """Fisher J^T M J for outputs z = model_fn(params, batch) of shape (..., C).

    kind="empirical": M from the gradients of `output_loss_fn(z, batch)`, which must be the mean
    over the output rows of a per-row loss (e.g. token cross-entropy). kind="mc": softmax
    outputs, labels sampled `num_samples` times per row from softmax(z) with `key` (fixed for
    the operator's life, so it stays one linear map); `output_loss_fn` is not used.
    """
    if kind == "empirical":
        if output_loss_fn is None:
            raise SandboxError("fisher(kind='empirical') needs output_loss_fn(outputs, batch)")
        _check_scalar(lambda p, b: output_loss_fn(model_fn(p, b), b), params, _first(batch))
        return from_rule(_EmpiricalFisher(model_fn, output_loss_fn), params, batch)
    if kind == "mc":
        if key is None:
            raise SandboxError("fisher(kind='mc') needs a PRNG key, e.g. key=jax.random.key(0)")
        return from_rule(_McFisher(model_fn, num_samples), params, batch, key)
    raise SandboxError(f"unknown Fisher kind {kind!r}; valid kinds: 'empirical', 'mc'")


def from_rule(per_batch: Callable, params, batch, *extra) -> LinearOperator:
    """The curvature operator whose product with v on one batch is `per_batch(layout, flat, batch, v_N,
    *extra)` (flat: the raveled params), averaged over a list of batches (scanned when they share
    shapes). The extension point: a new curvature matrix is one such rule (see `ggn_softmax`)."""
    layout = Layout.of(params)
    flat = layout.ravel(params)
    if not isinstance(batch, list):
        return LinearOperator(_Single(per_batch, layout), (flat, batch, *extra), layout)
    if not batch:
        raise SandboxError("the dataset is an empty list of batches; pass at least one batch")
    shapes = [jax.tree_util.tree_map(jnp.shape, b) for b in batch]
    if all(s == shapes[0] for s in shapes):
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *batch)
        return LinearOperator(_Scanned(per_batch, layout), (flat, stacked, *extra), layout)
    return LinearOperator(_Unrolled(per_batch, layout), (flat, batch, *extra), layout)


@dataclasses.dataclass(frozen=True)
class _Single:
    per_batch: Callable
    layout: Layout

    def __call__(self, operands, v_N):
        flat, batch, *extra = operands
        return self.per_batch(self.layout, flat, batch, v_N, *extra)


@dataclasses.dataclass(frozen=True)
class _Scanned:
    """Mean over stacked batches (leading axis), one batch in memory at a time."""
    per_batch: Callable
    layout: Layout

    def __call__(self, operands, v_N):
        flat, stacked, *extra = operands

        def step(acc_N, b):
            return acc_N + self.per_batch(self.layout, flat, b, v_N, *extra), None

        total_N, _ = jax.lax.scan(step, jnp.zeros_like(v_N), stacked)
        return total_N / jax.tree_util.tree_leaves(stacked)[0].shape[0]


@dataclasses.dataclass(frozen=True)
class _Unrolled:
    """Mean over batches of different shapes (traced once per batch)."""
    per_batch: Callable
    layout: Layout

    def __call__(self, operands, v_N):
        flat, batches, *extra = operands
        total = sum(self.per_batch(self.layout, flat, b, v_N, *extra) for b in batches)
        return total / len(batches)


@dataclasses.dataclass(frozen=True)
class _Hvp:
    loss_fn: Callable

    def __call__(self, layout, flat, batch, v_N):
        grad_fn = jax.grad(lambda w: self.loss_fn(layout.unravel(w), batch))
        return jax.jvp(grad_fn, (flat,), (v_N,))[1]


def linearize(model_fn, layout, flat, batch):
    """(z = f(w), u -> J u, w -> J^T w) of model_fn at the raveled params `flat`, from one linearization."""
    z, jvp_fn = jax.linearize(lambda w: model_fn(layout.unravel(w), batch), flat)
    vjp_fn = jax.linear_transpose(jvp_fn, flat)
    return z, jvp_fn, lambda u: vjp_fn(u)[0]


@dataclasses.dataclass(frozen=True)
class _Ggn:
    model_fn: Callable
    output_loss_fn: Callable

    def __call__(self, layout, flat, batch, v_N):
        z, jvp_fn, vjp_fn = linearize(self.model_fn, layout, flat, batch)
        loss_grad = jax.grad(lambda out: self.output_loss_fn(out, batch))
        hju = jax.jvp(loss_grad, (z,), (jvp_fn(v_N),))[1]
        return vjp_fn(hju)


@dataclasses.dataclass(frozen=True)
class _EmpiricalFisher:
    model_fn: Callable
    output_loss_fn: Callable

    def __call__(self, layout, flat, batch, v_N):
        z, jvp_fn, vjp_fn = linearize(self.model_fn, layout, flat, batch)
        # grad of the mean loss is g_i / N per row, so g_i g_i^T / N = N r_i r_i^T.
        r = jax.grad(lambda out: self.output_loss_fn(out, batch))(z)
        num_rows = r.size // r.shape[-1]
        s = jnp.sum(r * jvp_fn(v_N), axis=-1, keepdims=True)
        return vjp_fn(num_rows * s * r)


@dataclasses.dataclass(frozen=True)
class _McFisher:
    model_fn: Callable
    num_samples: int

    def __call__(self, layout, flat, batch, v_N, key):
        z, jvp_fn, vjp_fn = linearize(self.model_fn, layout, flat, batch)
        probs = jax.nn.softmax(z, axis=-1)
        labels = jax.random.categorical(key, z, axis=-1, shape=(self.num_samples, *z.shape[:-1]))
        g_S = probs - jax.nn.one_hot(labels, z.shape[-1], dtype=z.dtype)
        u = jvp_fn(v_N)
        s_S = jnp.sum(g_S * u, axis=-1, keepdims=True)
        num_rows = z.size // z.shape[-1]
        return vjp_fn(jnp.mean(s_S * g_S, axis=0) / num_rows)


def _first(batch):
    return batch[0] if isinstance(batch, list) and batch else batch


def _check_scalar(loss_fn, params, batch):
    out = jax.eval_shape(loss_fn, params, batch)
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise SandboxError(f"the loss must return a scalar, got shape {shape}; "
                           "reduce it (e.g. take the mean over the batch)")
