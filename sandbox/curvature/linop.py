"""Symmetric linear operators on a flattened parameter vector, as jit-friendly pytrees.

A `LinearOperator` is a matvec `A v` that never forms `A`. It is a pytree: its arrays (params,
batches, keys) are leaves and its matvec rule is static, so one jitted solver serves Hessian,
GGN and Fisher alike and is compiled once per rule and shape. Vectors are flat arrays of length
`dim` in the order of `jax.tree_util.tree_leaves(params)`; `matvec` also accepts a pytree shaped
like the params. A parameter block (a subtree) is a contiguous slice of that flat vector.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError

LINEARIZE_MAX_BYTES = 2**30  # residuals `LinearOperator.linearized` may keep; above this it does not linearize


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a params pytree maps to a flat vector: treedef, leaf shapes/dtypes, leaf paths."""

    treedef: Any
    shapes: tuple
    dtypes: tuple
    paths: tuple  # "block_0/attn/w_q" for each leaf

    @staticmethod
    def of(params) -> "Layout":
        path_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = tuple("/".join(_key_name(k) for k in path) for path, _ in path_leaves)
        leaves = [leaf for _, leaf in path_leaves]
        return Layout(treedef, tuple(np.shape(x) for x in leaves),
                      tuple(jnp.result_type(x) for x in leaves), paths)

    @property
    def sizes(self) -> tuple:
        return tuple(int(np.prod(s)) for s in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    @property
    def dtype(self):
        return jnp.result_type(*self.dtypes) if self.dtypes else jnp.float32

    def ravel(self, tree) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(tree)
        if not leaves:
            return jnp.zeros((0,), self.dtype)
        return jnp.concatenate([jnp.ravel(x).astype(self.dtype) for x in leaves])

    def unravel(self, flat_N: jax.Array):
        splits = np.cumsum(self.sizes)[:-1]
        parts = jnp.split(flat_N, splits)
        leaves = [p.reshape(s).astype(d) for p, s, d in zip(parts, self.shapes, self.dtypes)]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def block_names(self) -> list:
        """Every subtree path: "embed", "block_0", "block_0/attn", ..., and each leaf."""
        names = {"/".join(p.split("/")[:i]) for p in self.paths for i in range(1, p.count("/") + 2)}
        return sorted(names)

    def block(self, name: str) -> tuple:
        """(start, stop, sub-layout) of the subtree `name` in the flat vector."""
        name = name.strip("/")
        hits = [i for i, p in enumerate(self.paths) if p == name or p.startswith(name + "/")]
        if not name or not hits:
            raise SandboxError(f"unknown parameter block {name!r}; valid blocks: "
                               + ", ".join(self.block_names()))
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        first, last = hits[0], hits[-1]
        subtree = jax.tree_util.tree_unflatten(self.treedef, range(len(self.paths)))
        for key in name.split("/"):
            subtree = subtree[key] if isinstance(subtree, dict) else subtree[int(key)]
        sub = Layout(jax.tree_util.tree_structure(subtree),
                     self.shapes[first:last + 1], self.dtypes[first:last + 1],
                     self.paths[first:last + 1])
        return int(offsets[first]), int(offsets[last + 1]), sub


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


@jax.tree_util.register_pytree_node_class
class LinearOperator:
    """A = rule(operands, v) on flat vectors of length `dim`; `rule` must be hashable (static)."""

    def __init__(self, rule: Callable, operands, layout: Layout):
        self.rule, self.operands, self.layout = rule, operands, layout

    def tree_flatten(self):
        return (self.operands,), (self.rule, self.layout)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(aux[0], children[0], aux[1])

    @property
    def dim(self) -> int:
        return self.layout.dim

    @property
    def dtype(self):
        return self.layout.dtype

    def mv(self, v_N: jax.Array) -> jax.Array:
        """A v for a flat vector."""
        return self.rule(self.operands, v_N.astype(self.dtype))

    def matvec(self, v):
        """A v for a flat vector of length `dim` or a pytree shaped like the params."""
        if isinstance(v, (jax.Array, np.ndarray)) and np.shape(v) == (self.dim,):
            return _matvec(self, jnp.asarray(v))
        return self.unravel(_matvec(self, self.layout.ravel(v)))

    def unravel(self, v_N: jax.Array):
        return self.layout.unravel(v_N)

    def ravel(self, tree) -> jax.Array:
        return self.layout.ravel(tree)

    def block(self, name: str) -> "LinearOperator":
        """The diagonal block A[b, b] of the parameter subtree `name` ("block_0/attn", "embed")."""
        start, stop, sub = self.layout.block(name)
        return LinearOperator(_Restricted(self.rule, start, stop, self.dim), self.operands, sub)

    def linearized(self, max_bytes: int | None = None) -> "LinearOperator":
        """The same map with the work that does not depend on v done once, now. A v is linear in v, so
        `jax.linearize` at v = 0 splits it into residuals (for a Hessian: the forward and backward pass)
        and a tangent program that each later matvec runs alone. Use it inside a jitted solver.

        The residuals stay in memory for the operator's life. When they would exceed `max_bytes`
        (default `LINEARIZE_MAX_BYTES`), the operator comes back unchanged: a dataset operator scanned
        over many batches would otherwise hold every batch's activations at once, where a plain matvec
        holds one batch's. The unused linearization is then dead code that XLA removes."""
        if _tangent_only(self.rule):
            return self
        zero_N = jnp.zeros((self.dim,), self.dtype)
        fn, consts = jax.closure_convert(jax.linearize(self.mv, zero_N)[1], zero_N)
        limit = LINEARIZE_MAX_BYTES if max_bytes is None else max_bytes
        if sum(np.prod(np.shape(c)) * jnp.result_type(c).itemsize for c in consts) > limit:
            return self
        return LinearOperator(_Closed(fn), tuple(consts), self.layout)

    def scaled(self, d_N: jax.Array) -> "LinearOperator":
        """D A D with D = diag(d): the operator in coordinates rescaled by d."""
        return LinearOperator(_Scaled(self.rule), (self.operands, d_N), self.layout)


@dataclasses.dataclass(frozen=True)
class _Restricted:
    rule: Callable
    start: int
    stop: int
    dim: int

    def __call__(self, operands, v_M):
        v_N = jnp.zeros((self.dim,), v_M.dtype).at[self.start:self.stop].set(v_M)
        return self.rule(operands, v_N)[self.start:self.stop]


@dataclasses.dataclass(frozen=True)
class _Scaled:
    rule: Callable

    def __call__(self, operands, v_N):
        inner, d_N = operands
        return d_N * self.rule(inner, d_N * v_N)


@dataclasses.dataclass(frozen=True)
class _Closed:
    fn: Callable  # fn(v, *residuals), from jax.closure_convert

    def __call__(self, residuals, v_N):
        return self.fn(v_N, *residuals)


def _tangent_only(rule) -> bool:
    """Whether `rule` is already a linearized operator's (possibly scaled or restricted): nothing left at w."""
    return isinstance(rule, _Closed) or (isinstance(rule, (_Scaled, _Restricted)) and _tangent_only(rule.rule))


@dataclasses.dataclass(frozen=True)
class _Dense:
    def __call__(self, a_NxN, v_N):
        return a_NxN @ v_N


@jax.jit
def _matvec(op, v_N):
    return op.mv(v_N)


def from_dense(a_NxN: jax.Array) -> LinearOperator:
    """Wrap an explicit symmetric matrix as an operator (tests, small problems)."""
    a_NxN = jnp.asarray(a_NxN)
    return LinearOperator(_Dense(), a_NxN, Layout.of(jnp.zeros(a_NxN.shape[0], a_NxN.dtype)))


def dense(op: LinearOperator, batch_size: int = 128) -> jax.Array:
    """The full matrix A[:, i] = A e_i, from `dim` matvecs (batched); only for small operators."""
    return _dense(op, batch_size=min(batch_size, max(op.dim, 1)))


@functools.partial(jax.jit, static_argnames="batch_size")
def _dense(op, batch_size):
    eye_NxN = jnp.eye(op.dim, dtype=op.dtype)
    return jax.lax.map(op.mv, eye_NxN, batch_size=batch_size).T


def vector_batch() -> int:
    """How many vectors the solvers push through an operator at once (vmapped), by default: 1 on CPU,
    where XLA's batched dot_general is slower than a loop of plain dots (`benchmarks/vector_batch.py`: the
    tiny transformer's HVP takes 19 ms per vector in a loop, 48 vmapped 32 at a time; five Lanczos runs
    vmapped take 3.6x the time per step of the same five one after another), 32 elsewhere."""
    return 1 if jax.default_backend() == "cpu" else 32


def map_rows(f: Callable, x_PxN: jax.Array, batch_size: int | None = None):
    """f(x) for each row x, `batch_size` rows at a time vmapped (default `vector_batch()`) in a `lax.map`
    loop over chunks. Rows are padded with copies of the first to whole chunks, so that f is compiled
    once (`lax.map`'s own batch_size would compile a second copy for the remainder); the outputs (a
    pytree of arrays with a leading row axis) are cut back to the P rows."""
    p = x_PxN.shape[0]
    size = min(batch_size or vector_batch(), p)
    if size == 1:  # a plain loop: even a vmap over one row gives every dot a batch dimension
        return jax.lax.map(f, x_PxN)
    chunks = -(-p // size)
    size = -(-p // chunks)
    padded_CxBxN = jnp.concatenate([x_PxN, jnp.broadcast_to(x_PxN[:1], (chunks * size - p, *x_PxN.shape[1:]))])
    out = jax.lax.map(jax.vmap(f), padded_CxBxN.reshape(chunks, size, *x_PxN.shape[1:]))
    return jax.tree_util.tree_map(lambda y: y.reshape(chunks * size, *y.shape[2:])[:p], out)


def ensure_finite(tree, what: str):
    """Raise SandboxError if a concrete result holds NaN/inf (skipped while tracing)."""
    for x in jax.tree_util.tree_leaves(tree):
        if isinstance(x, jax.core.Tracer):
            return tree
        if not bool(jnp.all(jnp.isfinite(x))):
            raise SandboxError(f"{what} contains NaN or inf: the operator (loss, params or batch) "
                               "is not finite; check the loss value at these parameters")
    return tree
