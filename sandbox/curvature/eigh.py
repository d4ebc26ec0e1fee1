"""Symmetric eigendecomposition of small matrices that never reaches LAPACK as a batch.

jaxlib's CPU eigh splits a batched call into pieces queued on the thread pool it runs on, and
waits for them. Two batched eighs in flight at once (Lanczos vmapped over seeds beside SLQ's
probes) can each hold a worker while waiting for pieces no free worker is left to run: the
program hangs (seen with gdb on 2 cores: both workers in lapack_ssyevd_ffi -> ParallelBatchMap
-> BlockingCounter::Wait). Here a vmapped eigh loops over the batch with `lax.map`, one matrix
per LAPACK call, which never splits. The tridiagonals of Lanczos are at most a few hundred wide,
so the loop costs little. Its JVP is the textbook one (distinct eigenvalues):

    dw = diag(V^T dA V),   dV = V (F o V^T dA V),   F_ij = 1 / (w_j - w_i) for i != j, F_ii = 0.
"""

import jax
import jax.numpy as jnp


@jax.custom_batching.custom_vmap
def _one_at_a_time(a_MxM):
    w_M, v_MxM = jnp.linalg.eigh(a_MxM)
    return w_M, v_MxM


@_one_at_a_time.def_vmap
def _map_over_batch(axis_size, in_batched, a_BxMxM):
    (batched,) = in_batched
    out = jax.lax.map(_one_at_a_time, a_BxMxM) if batched else _one_at_a_time(a_BxMxM)
    return out, (batched, batched)


def eigh(a_MxM):
    """(w ascending, V with eigenvectors as columns) of (a + a^T) / 2, as jnp.linalg.eigh; vmap-safe."""
    return _symmetric_eigh((a_MxM + a_MxM.T) / 2)


@jax.custom_jvp
def _symmetric_eigh(a_MxM):
    return _one_at_a_time(a_MxM)


@_symmetric_eigh.defjvp
def _eigh_jvp(primals, tangents):
    (a_MxM,), (da_MxM,) = primals, tangents
    w_M, v_MxM = _symmetric_eigh(a_MxM)
    rotated_MxM = v_MxM.T @ da_MxM @ v_MxM
    gap_MxM = w_M[None, :] - w_M[:, None]
    off = ~jnp.eye(w_M.shape[0], dtype=bool)
    f_MxM = jnp.where(off, 1.0 / jnp.where(off, gap_MxM, 1.0), 0.0)
    return (w_M, v_MxM), (jnp.diagonal(rotated_MxM), v_MxM @ (f_MxM * rotated_MxM))
