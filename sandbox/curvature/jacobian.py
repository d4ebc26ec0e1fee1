"""Jacobians of a function f(x) -> y (e.g. logits w.r.t. input embeddings) and their singular values.

J = df/dx at x is used only through J u (jvp, forward mode) and J^T w (vjp, reverse mode) from
one linearization. Its singular values are the square roots of the eigenvalues of the Gram
operator J^T J (input space), found by Lanczos; the dense J (jacfwd) serves small checks.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from sandbox.curvature.lanczos import eigenpairs
from sandbox.curvature.linop import Layout, LinearOperator


@dataclasses.dataclass(frozen=True)
class Jacobian:
    """J of f at x: `jvp(u)` (u shaped like x) and `vjp(w)` (w shaped like f(x))."""

    f: Callable
    x: jax.Array

    def jvp(self, u):
        return jax.jvp(self.f, (self.x,), (u,))[1]

    def vjp(self, w):
        return jax.vjp(self.f, self.x)[1](w)[0]

    @property
    def in_dim(self) -> int:
        return Layout.of(self.x).dim

    @property
    def out_dim(self) -> int:
        return Layout.of(jax.eval_shape(self.f, self.x)).dim

    def dense(self) -> jax.Array:
        """J as an (out_dim, in_dim) matrix, flattened in the order of x and f(x)."""
        return jax.jacfwd(self.f)(self.x).reshape(self.out_dim, self.in_dim)

    def gram(self) -> LinearOperator:
        """J^T J as a symmetric operator on flat inputs."""
        return LinearOperator(_Gram(self.f, Layout.of(self.x)), self.x, Layout.of(self.x))


def jacobian(f: Callable, x) -> Jacobian:
    """The Jacobian of f at x as jvp/vjp (no matrix formed)."""
    return Jacobian(f, x)


def singular_values(jac: Jacobian, k: int = 5, *, key: jax.Array, num_steps: int | None = None):
    """The k largest singular values of J (descending), sqrt of Lanczos eigenvalues of J^T J."""
    values_K = eigenpairs(jac.gram(), k, key=key, num_steps=num_steps).values_K
    return jnp.sqrt(jnp.maximum(values_K, 0))


@dataclasses.dataclass(frozen=True)
class _Gram:
    f: Callable
    layout: Layout

    def __call__(self, x, u_N):
        _, f_vjp = jax.vjp(self.f, x)
        ju = jax.jvp(self.f, (x,), (self.layout.unravel(u_N),))[1]
        return self.layout.ravel(f_vjp(ju)[0])
