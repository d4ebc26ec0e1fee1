"""Spectra of many diagonal blocks of one operator in one compiled program, through masked operators.

The diagonal block A_bb of the coordinates b is, in the full dimension N, the masked operator
P_b A P_b with P_b = diag(mask_b): one matvec that zeroes the other coordinates before and after.
Its spectrum is A_bb's n_b eigenvalues plus N - n_b zeros. The zeros never enter:
- Lanczos started from a masked vector stays on the block's coordinates (every matvec is masked),
  so its T is exactly that of Lanczos on A_bb. A block smaller than the step count m is exhausted
  after n_b steps; the later steps are inactive (zero rows, alpha = beta = 0, see `lanczos`) and
  their decoupled diagonal entries of T are set to a sentinel below the Gershgorin bound of the
  active part, so they sort last among the Ritz values and get quadrature weight 0;
- trace: tr(P_b A) = tr A_bb, so one Hutch++ of the whole operator, split by coordinate
  (`trace.hutchpp_terms`), gives Hutch++ for every block from the same matvecs.
All targets (masks; all ones is the whole operator) advance together: each Lanczos step is ONE batched
matvec over every target's vectors (top-k start and SLQ probes). Targets on disjoint coordinates (the
blocks of a parameter grouping) share one packed basis (segmented Lanczos, `lanczos.advance`), so
reorthogonalizing all of them reads one basis, not one per block. One compilation, whatever the blocks.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.curvature.lanczos import Tridiagonal, advance, start, tridiagonal_eigh
from sandbox.curvature.linop import Layout, LinearOperator, ensure_finite
from sandbox.curvature.trace import _matmat, hutchpp_terms
from sandbox.errors import SandboxError

STAGES = ("top eigenvalues", "density", "trace")


def masks(layout: Layout, names: list) -> np.ndarray:
    """(T, N) 0/1 masks of the parameter blocks `names` ("all" is every coordinate)."""
    out = np.zeros((len(names), layout.dim), np.dtype(layout.dtype))
    for t, name in enumerate(names):
        start, stop = (0, layout.dim) if name == "all" else layout.block(name)[:2]
        out[t, start:stop] = 1
    return out


def packs(masks_TxN) -> tuple[list, tuple]:
    """(order, sizes): the targets regrouped into packs of pairwise disjoint masks, largest first, each
    target into the first pack it does not overlap; pack p is order[sum(sizes[:p]):][:sizes[p]]. Blocks
    that partition the coordinates make one pack, "all" another."""
    masks_TxN = np.asarray(masks_TxN) != 0
    groups, covered = [], []
    for t in sorted(range(len(masks_TxN)), key=lambda t: -masks_TxN[t].sum()):
        p = next((p for p, c in enumerate(covered) if not (c & masks_TxN[t]).any()), len(groups))
        if p == len(groups):
            groups.append([]), covered.append(np.zeros(masks_TxN.shape[1], bool))
        groups[p].append(t)
        covered[p] |= masks_TxN[t]
    return [t for g in groups for t in g], tuple(len(g) for g in groups)


def ritz(tri: Tridiagonal, num_active):
    """(theta ascending, S, active_M) of T whose steps >= num_active are inactive (decoupled zeros):
    those get the value of a sentinel below every active Ritz value, so they come first, flagged."""
    m = tri.alphas_M.shape[0]
    active_M = jnp.arange(m) < num_active
    off_M = jnp.abs(tri.betas_M) + jnp.abs(jnp.concatenate([jnp.zeros(1, tri.betas_M.dtype), tri.betas_M[:-1]]))
    lo = jnp.min(jnp.where(active_M, tri.alphas_M - off_M, jnp.inf))  # Gershgorin interval of the active part
    hi = jnp.max(jnp.where(active_M, tri.alphas_M + off_M, -jnp.inf))
    gap = jnp.max(jnp.array([hi - lo, jnp.abs(lo), jnp.abs(hi)]))
    sentinel = lo - jnp.where(gap > 0, gap, 1.0)
    theta_M, s_MxM = tridiagonal_eigh(tri._replace(alphas_M=jnp.where(active_M, tri.alphas_M, sentinel)))
    return theta_M, s_MxM, jnp.arange(m) >= m - jnp.minimum(num_active, m)


def spectra(op: LinearOperator, masks_TxN, *, key: jax.Array, k: int, num_steps: int, num_probes: int = 0,
            num_matvecs: int = 0, batch_size: int | None = None, tick=None) -> dict:
    """Per target (a 0/1 row of `masks_TxN`): the k top Lanczos eigenvalues of its block and their residuals,
    with num_probes > 0 the SLQ nodes and weights, with num_matvecs > 0 the Hutch++ trace (batches of 32).

    Returns numpy arrays {"values_TxK", "residuals_TxK", ["nodes_TxPxM", "weights_TxPxM"], ["trace_T"]};
    a block of n_b < k coordinates has only its first n_b values (the rest are sentinels: drop them).
    Top-k and SLQ share one Lanczos of max(num_steps, k) steps (at most N) for all targets at once, each
    step one batched matvec of T (1 + num_probes) vectors, at most `batch_size` at a time (default: all),
    and the operator is linearized once for all (`LinearOperator.linearized`). `tick(t, stage)` is called
    for each target as each stage finishes (from inside the running program).
    """
    masks_TxN = np.asarray(masks_TxN, np.dtype(op.dtype))
    if masks_TxN.ndim != 2 or masks_TxN.shape[1] != op.dim:
        raise SandboxError(f"masks of shape {masks_TxN.shape} do not fit an operator of dimension {op.dim}")
    if not 1 <= k <= op.dim:
        raise SandboxError(f"k={k} eigenvalues asked of an operator of dimension {op.dim}; choose 1 <= k <= {op.dim}")
    if num_steps < 1 or num_probes < 0 or 0 < num_matvecs < 3 or num_matvecs < 0:
        raise SandboxError(f"num_steps={num_steps} must be >= 1, num_probes={num_probes} >= 0 and "
                           f"num_matvecs={num_matvecs} 0 or >= 3 (Hutch++)")
    if batch_size is not None and batch_size < 1:
        raise SandboxError(f"batch_size={batch_size} must be >= 1 (matvecs at once)")
    order, sizes = packs(masks_TxN)
    vectors = len(masks_TxN) * (1 + num_probes)
    out = _spectra(op, jnp.asarray(masks_TxN[order]), jnp.asarray(order), key, k, min(op.dim, max(num_steps, k)),
                   num_probes, num_matvecs, sizes, min(batch_size or vectors, vectors), tick)
    back = np.argsort(order)  # packed position -> target
    return {name: np.asarray(x)[back] for name, x in ensure_finite(out, "the block spectra").items()}


@functools.partial(jax.jit, static_argnames=("k", "num_steps", "num_probes", "num_matvecs", "sizes", "batch_size",
                                             "tick"))
def _spectra(op, masks_TxN, targets_T, key, k, num_steps, num_probes, num_matvecs, sizes, batch_size, tick):
    def notify(stage, result):
        if tick is not None:  # after `result` exists, so after the stage's work
            for t in range(len(targets_T)):
                jax.debug.callback(lambda t, _: tick(int(t), stage), targets_T[t], result)

    linear = op.linearized()  # forward and backward pass once, for every target and matvec
    n, ends = op.dim, np.cumsum((0,) + sizes)
    pack_masks = [masks_TxN[a:b] for a, b in zip(ends[:-1], ends[1:])]  # each P_pxN: disjoint rows
    # top-k from a Gaussian start and the SLQ probes, the same vectors masked to every target
    starts_VxN = jax.random.normal(key, (1, n), op.dtype)
    if num_probes:
        starts_VxN = jnp.concatenate([starts_VxN, jax.random.rademacher(key, (num_probes, n), op.dtype)])
    bases = [jax.vmap(start, (0, None, None))(starts_VxN, m_PxN, num_steps) for m_PxN in pack_masks]

    def step(bases, i):
        # every target's P_t A P_t q for every start: one batched matvec, summed back into the packs
        inputs_XxN = jnp.concatenate([(b[:, i, None] * m_PxN).reshape(-1, n) for b, m_PxN in zip(bases, pack_masks)])
        outputs_XxN = _matmat(linear, inputs_XxN, batch_size)
        new, alphas, betas, at = [], [], [], 0
        for b, m_PxN in zip(bases, pack_masks):
            count = b.shape[0] * m_PxN.shape[0]
            w_VxN = jnp.sum(outputs_XxN[at:at + count].reshape(b.shape[0], -1, n) * m_PxN, axis=1)
            at += count
            b, alpha_VxP, beta_VxP = jax.vmap(advance, (0, None, 0, None))(b, i, w_VxN, m_PxN)
            new, alphas, betas = new + [b], alphas + [alpha_VxP], betas + [beta_VxP]
        return new, (jnp.concatenate(alphas, axis=1).T, jnp.concatenate(betas, axis=1).T)

    _, (alphas_MxTxV, betas_MxTxV) = jax.lax.scan(step, bases, jnp.arange(num_steps))
    tri = Tridiagonal(jnp.moveaxis(alphas_MxTxV, 0, -1), jnp.moveaxis(betas_MxTxV, 0, -1), None)
    num_active_T = jnp.sum(masks_TxN, axis=1)
    theta_TxVxM, s_TxVxMxM, active_TxVxM = jax.vmap(jax.vmap(ritz, (0, None)))(tri, num_active_T)
    idx = jnp.arange(num_steps)[::-1][:k]
    out = {"values_TxK": theta_TxVxM[:, 0, idx],
           "residuals_TxK": jnp.abs(tri.betas_M[:, 0, -1:] * s_TxVxMxM[:, 0, -1, idx])}
    notify(STAGES[0], out["values_TxK"])
    if num_probes:  # inactive nodes: weight 0, and the top node's value so they stretch no grid
        out["nodes_TxPxM"] = jnp.where(active_TxVxM, theta_TxVxM, theta_TxVxM[..., -1:])[:, 1:]
        out["weights_TxPxM"] = jnp.where(active_TxVxM, s_TxVxMxM[:, :, 0] ** 2, 0.0)[:, 1:]
        notify(STAGES[1], out["nodes_TxPxM"])
    if num_matvecs:
        out["trace_T"] = masks_TxN @ hutchpp_terms(linear, key, num_matvecs, 32)
        notify(STAGES[2], out["trace_T"])
    return out
