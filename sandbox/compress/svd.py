"""Low-rank factorization of a weight matrix: plain, whitened (SVD-LLM) and scaled (ASVD) SVD.

A dense layer computes y = x W with W of shape (M, N) = (D_in, D_out). Truncating W to rank k
stores two thin matrices u (M, k) and v (k, N) with W_k = u v: k (M + N) numbers instead of M N,
and `sandbox.nn.linear.dense` multiplies x u first, so FLOPs shrink by the same factor.

Eckart-Young: the best rank-k approximation in both Frobenius and spectral norm keeps the k
largest singular values, and its errors are exactly
    ||W - W_k||_F = sqrt(sum_{i>k} s_i^2),     ||W - W_k||_2 = s_{k+1}.

Activation-aware variants minimize the *output* error ||X W - X W'||_F on calibration inputs
X (T, M) instead. With G = X^T X = L L^T (Cholesky), ||X D||_F = ||L^T D||_F, so the optimal
rank-k W' is L^{-T} [L^T W]_k (SVD-LLM whitening), and the output error equals the dropped
singular values of L^T W. ASVD instead scales rows by s_j = mean_t |x_tj|^alpha and truncates
diag(s) W, a cheap diagonal stand-in for L^T.
"""

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from sandbox.errors import SandboxError


def check_rank(rank: int, shape) -> int:
    """Return `rank` if 1 <= rank <= min(M, N), else raise a SandboxError naming the valid range."""
    limit = min(shape)
    if not isinstance(rank, (int, np.integer)) or not 1 <= rank <= limit:
        raise SandboxError(f"rank {rank!r} is invalid for a {shape[0]}x{shape[1]} matrix: choose 1..{limit}")
    return int(rank)


def eckart_young_errors(s_K, rank: int) -> dict:
    """Exact truncation errors from the singular values: Frobenius sqrt(sum_{i>k} s_i^2), spectral s_{k+1}."""
    s_K = jnp.asarray(s_K)
    dropped = s_K[rank:]
    spectral = dropped[0] if dropped.shape[0] else jnp.zeros((), s_K.dtype)
    return {"fro": jnp.sqrt(jnp.sum(dropped**2)), "spectral": spectral}


def factors(decomposition, rank: int) -> dict:
    """Rank-k factors {"u": (M, k), "v": (k, N)} from a decomposition (A, s, V^T) of W:
    u = A_k sqrt(s_k), v = sqrt(s_k) V_k^T. Decompose once, then truncate at every rank cheaply
    (numpy arrays on the host: a slice per rank, nothing compiled per rank)."""
    a_MxK, s_K, vt_KxN = (np.asarray(x) for x in decomposition)
    rank = check_rank(rank, (a_MxK.shape[0], vt_KxN.shape[1]))
    root = np.sqrt(s_K[:rank])
    # device_put, not jnp.asarray, which compiles a small program per new shape
    return {"u": jax.device_put(a_MxK[:, :rank] * root), "v": jax.device_put(root[:, None] * vt_KxN[:rank])}


# The decompositions are jitted: one program per layer shape instead of one per primitive and shape.
@jax.jit
def plain_decomposition(w_MxN):
    """(U, s, V^T): the SVD of W itself, whose truncations are the Eckart-Young optima."""
    return jnp.linalg.svd(w_MxN, full_matrices=False)


def whitened_decomposition(w_MxN, g_MxM):
    """(L^{-T} U, s, V^T) with U s V^T the SVD of L^T W and G = L L^T: s are output-space singular values."""
    a_MxK, s_K, vt_KxN, finite = _whitened(w_MxN, g_MxM)
    if not bool(finite):
        raise SandboxError("calibration Gram matrix is not positive definite: "
                           "give more calibration tokens or a larger damp")
    return a_MxK, s_K, vt_KxN


@jax.jit
def _whitened(w_MxN, g_MxM):
    l_MxM = jnp.linalg.cholesky(g_MxM)
    u_MxK, s_K, vt_KxN = jnp.linalg.svd(l_MxM.T @ w_MxN, full_matrices=False)
    return jsl.solve_triangular(l_MxM.T, u_MxK, lower=False), s_K, vt_KxN, jnp.all(jnp.isfinite(l_MxM))


def asvd_scale(x_TxM, alpha: float = 0.5):
    """ASVD's input-channel scale s_j = (mean_t |x_tj|)^alpha, floored at 1e-6 of its max."""
    x = jnp.asarray(x_TxM).reshape(-1, x_TxM.shape[-1])
    return scale_from_abs_mean(jnp.mean(jnp.abs(x), axis=0), alpha)


@jax.jit
def scale_from_abs_mean(abs_mean_M, alpha: float = 0.5):
    """s_j = abs_mean_j^alpha, floored so no channel is divided by zero."""
    s_M = jnp.asarray(abs_mean_M) ** alpha
    return jnp.maximum(s_M, 1e-6 * jnp.max(s_M))


@jax.jit
def asvd_decomposition(w_MxN, scale_M):
    """(diag(s)^{-1} U, sigma, V^T) with U sigma V^T the SVD of diag(s) W."""
    u_MxK, s_K, vt_KxN = jnp.linalg.svd(scale_M[:, None] * w_MxN, full_matrices=False)
    return u_MxK / scale_M[:, None], s_K, vt_KxN


def svd_factors(w_MxN, rank: int) -> dict:
    """Best rank-k factors of W (Eckart-Young): u v = U_k S_k V_k^T."""
    check_rank(rank, w_MxN.shape)
    return factors(plain_decomposition(w_MxN), rank)


def gram(x_TxM, damp: float = 1e-6):
    """Calibration Gram matrix G = X^T X, plus damp * mean(diag G) * I so its Cholesky factor exists."""
    x = jnp.asarray(x_TxM).reshape(-1, x_TxM.shape[-1])
    return damped(x.T @ x, damp)


@jax.jit
def damped(g_MxM, damp: float = 1e-6):
    """G + damp * mean(diag G) * I: SVD-LLM's ridge, which keeps G positive definite."""
    g_MxM = jnp.asarray(g_MxM)
    return g_MxM + damp * jnp.mean(jnp.diag(g_MxM)) * jnp.eye(g_MxM.shape[0], dtype=g_MxM.dtype)


def whitened_factors(w_MxN, g_MxM, rank: int) -> dict:
    """SVD-LLM: with G = L L^T, factors of L^{-T} [L^T W]_k, the rank-k W' minimizing ||X (W - W')||_F."""
    check_rank(rank, w_MxN.shape)
    return factors(whitened_decomposition(w_MxN, g_MxM), rank)


def asvd_factors(w_MxN, scale_M, rank: int) -> dict:
    """ASVD: truncate diag(s) W to rank k and undo the scale on u (s from `asvd_scale`)."""
    check_rank(rank, w_MxN.shape)
    return factors(asvd_decomposition(w_MxN, scale_M), rank)


def output_error(x_TxM, w_MxN, f: dict):
    """Relative output error ||X W - X u v||_F / ||X W||_F of a factorized layer on inputs X."""
    x = jnp.asarray(x_TxM).reshape(-1, x_TxM.shape[-1])
    y = x @ w_MxN
    return jnp.linalg.norm(y - (x @ f["u"]) @ f["v"]) / jnp.linalg.norm(y)


def rank_for_energy(s_K, energy: float) -> int:
    """Smallest k whose kept energy sum_{i<=k} s_i^2 / sum s_i^2 reaches `energy` in (0, 1]."""
    if not 0.0 < energy <= 1.0:
        raise SandboxError(f"energy {energy!r} must be in (0, 1]: the fraction of sum s_i^2 to keep")
    s2 = np.asarray(s_K, dtype=np.float64) ** 2
    kept = np.cumsum(s2) / s2.sum()
    return int(min(np.searchsorted(kept, energy * (1 - 1e-12)) + 1, len(s2)))


def rank_for_fraction(shape, fraction: float) -> int:
    """Rank whose factors hold about `fraction` of the dense M N parameters: k = fraction M N / (M + N)."""
    if not 0.0 < fraction <= 1.0:
        raise SandboxError(f"kept fraction {fraction!r} must be in (0, 1]")
    m, n = shape
    return int(np.clip(round(fraction * m * n / (m + n)), 1, min(m, n)))


def ranks_for_budget(spectra: dict, shapes: dict, fraction: float) -> dict:
    """Global budget: keep the singular values with the largest s^2 per parameter (M + N) across all
    layers until their factors hold `fraction` of the layers' dense parameters (at least rank 1 each).

    Within a layer s^2/(M+N) falls with i, so the greedy choice keeps a prefix of each spectrum and
    maximizes the total kept energy sum s_i^2 for its parameter count.
    """
    if not 0.0 < fraction <= 1.0:
        raise SandboxError(f"budget fraction {fraction!r} must be in (0, 1]")
    names = sorted(spectra)
    cost = {n: sum(shapes[n]) for n in names}
    budget = fraction * sum(shapes[n][0] * shapes[n][1] for n in names)
    ranks = {n: 1 for n in names}
    spent = sum(cost.values())
    gains = sorted(
        ((float(s) ** 2 / cost[n], n) for n in names for s in np.asarray(spectra[n])[1:]), reverse=True
    )
    for _, n in gains:
        if spent + cost[n] > budget:
            continue
        ranks[n] += 1
        spent += cost[n]
    return ranks
