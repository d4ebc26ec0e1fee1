"""The vmap-safe eigh: values, gradients, and no batched LAPACK call under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxpr_calls import batched_eigh_shapes

from sandbox.curvature.eigh import eigh


def _symmetric(key, *shape):
    a = jax.random.normal(key, shape, jnp.float64)
    return a + jnp.swapaxes(a, -1, -2)


def test_vmapped_equals_lapack_and_never_batches():
    with jax.enable_x64(True):
        a_BxMxM = _symmetric(jax.random.key(0), 4, 6, 6)
        w_BxM, v_BxMxM = jax.jit(jax.vmap(eigh))(a_BxMxM)
        np.testing.assert_allclose(w_BxM, np.linalg.eigvalsh(np.asarray(a_BxMxM)), rtol=1e-12, atol=1e-12)
        rebuilt = jnp.einsum("bij,bj,bkj->bik", v_BxMxM, w_BxM, v_BxMxM)
        np.testing.assert_allclose(rebuilt, a_BxMxM, atol=1e-12)
        # a double vmap (seeds x probes) still reaches LAPACK one matrix at a time
        twice = jax.vmap(jax.vmap(eigh))
        assert batched_eigh_shapes(jax.make_jaxpr(twice)(a_BxMxM[None]).jaxpr) == []
        lapack = jax.make_jaxpr(jax.vmap(jnp.linalg.eigh))(a_BxMxM).jaxpr  # what it replaces: one batched call
        assert batched_eigh_shapes(lapack) == [(4, 6, 6)]


def test_gradients_equal_lapack_eigh():
    with jax.enable_x64(True):
        a_MxM = _symmetric(jax.random.key(1), 5, 5)
        c_MxM = jax.random.normal(jax.random.key(2), (5, 5), jnp.float64)

        def scalar(decompose):  # sign-invariant in each eigenvector: sum_j w_j (v_j^T c v_j)
            return lambda a: jnp.sum(decompose(a)[0] * jnp.einsum("ij,ik,kj->j", decompose(a)[1], c_MxM,
                                                                   decompose(a)[1]))

        ours, theirs = jax.grad(scalar(eigh))(a_MxM), jax.grad(scalar(jnp.linalg.eigh))(a_MxM)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-10)
        batched = jax.vmap(jax.grad(scalar(eigh)))(a_MxM[None].repeat(2, 0))
        np.testing.assert_allclose(batched[1], theirs, rtol=1e-9, atol=1e-10)
