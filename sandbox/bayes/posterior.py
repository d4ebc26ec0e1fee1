"""The Laplace posterior p(theta | D) ~ N(theta*, P^{-1}) around a trained network's MAP theta*.

Bayes: p(theta | D) = p(D | theta) p(theta) / p(D). With the prior N(0, diag(delta)^{-1}), a second-
order expansion of -log p(theta | D) at theta* gives a Gaussian whose precision is
    P = H + diag(delta),   H = curvature of -sum_n log p(y_n | f(theta, x_n))  at theta*,
with H the GGN (default), the Hessian or the empirical Fisher (as laplace-torch). `subset` keeps the
rest of the parameters fixed at the MAP (e.g. the last layer: Kristiadi et al. 2020). The full,
Hessian and low-rank curvatures come from the toolkit's operators (sandbox.curvature); diag and
kron sum per-example Jacobian rows S^T J (likelihood.py, kfac.py).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sandbox import curvature as ops
from sandbox.bayes import kfac, structures
from sandbox.bayes import likelihood as lik_lib
from sandbox.curvature.linop import Layout
from sandbox.errors import SandboxError

STRUCTURES = ("full", "diag", "kron", "lowrank")
CURVATURES = ("ggn", "hessian", "fisher")
FULL_MAX_BYTES = 4 * 2 ** 30  # a dense P x P precision above this is refused


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static part of jitted posteriors
class Subset:
    """The chosen parameters as one flat vector theta_s, and the way back into the full tree."""
    layout: Layout          # of the whole params tree
    index_S: np.ndarray     # positions of theta_s in the flat full vector
    paths: tuple            # leaf paths of the subset, in order
    shapes: tuple
    group_S: np.ndarray     # leaf number (prior group) of each entry of theta_s

    @staticmethod
    def of(params, names) -> "Subset":
        layout = Layout.of(params)
        offsets = kfac.offsets_of(layout.shapes)
        if names is None:
            chosen = list(range(len(layout.paths)))
        else:
            names = [names] if isinstance(names, str) else list(names)
            hits = set()
            for name in names:
                start, stop, _ = layout.block(name)  # raises with the valid names if unknown
                hits |= {i for i in range(len(layout.paths)) if start <= offsets[i] < stop}
            chosen = sorted(hits)
        index = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in chosen])
        group = np.concatenate([np.full(offsets[i + 1] - offsets[i], g) for g, i in enumerate(chosen)])
        return Subset(layout, index, tuple(layout.paths[i] for i in chosen),
                      tuple(layout.shapes[i] for i in chosen), group)

    @property
    def dim(self):
        return int(self.index_S.size)

    def theta(self, params):
        return self.layout.ravel(params)[self.index_S]

    def merge(self, params, theta_S):
        """The params tree with the subset replaced by theta_S."""
        return self.layout.unravel(self.layout.ravel(params).at[self.index_S].set(theta_S))


@struct.dataclass
class Posterior:
    """A fitted Laplace posterior (a pytree: jitted functions take it); see `laplace`."""
    model_fn: Callable = struct.field(pytree_node=False)
    params: object
    subset: Subset = struct.field(pytree_node=False)
    likelihood: str = struct.field(pytree_node=False)
    sigma_noise: float = struct.field(pytree_node=False)
    structure: str = struct.field(pytree_node=False)
    curv: object            # one of structures.Full / Diag / Kron / LowRank (H without the prior)
    prior_precision: object  # scalar or one value per subset leaf
    loss: object            # -log p(D | theta*), summed
    num_data: int = struct.field(pytree_node=False)

    def prior_vector(self, prior_precision=None):
        """delta per parameter from a scalar or one value per subset leaf."""
        prior = self.prior_precision if prior_precision is None else prior_precision
        return prior_vector(prior, self.subset.group_S, len(self.subset.paths), self.structure)

    def precision(self, prior_precision=None):
        """The dense posterior precision P = H + diag(delta) (P x P; small models)."""
        return _dense(self.curv, self.prior_vector(prior_precision))

    def predictive(self, x, method="probit", **kwargs):
        from sandbox.bayes import predictive
        return predictive.predictive(self, x, method, **kwargs)

    def functional_variance(self, x):
        from sandbox.bayes import predictive
        return predictive.glm_moments(self, x)[1]

    def log_marginal_likelihood(self, prior_precision=None):
        from sandbox.bayes import evidence
        return evidence.log_marginal_likelihood(self, prior_precision)

    def optimize_prior_precision(self, **kwargs):
        from sandbox.bayes import evidence
        return evidence.optimize_prior_precision(self, **kwargs)


@jax.jit
def _dense(curv, delta_P):
    return curv.dense(delta_P)


def prior_vector(prior, group_S, num_groups, structure):
    prior = jnp.asarray(prior)
    if not isinstance(prior, jax.core.Tracer) and not bool(jnp.all(prior > 0)):
        raise SandboxError(f"prior_precision must be positive (and finite), got {np.asarray(prior).tolist()}")
    if prior.ndim == 0:
        return jnp.full(group_S.shape, prior)
    if prior.shape != (num_groups,):
        raise SandboxError(f"prior_precision must be a scalar or one value per parameter leaf "
                           f"({num_groups}), got shape {prior.shape}")
    if structure == "lowrank":
        raise SandboxError("structure='lowrank' takes a scalar prior_precision (the complement's)")
    return prior[group_S]


def _as_arrays(data):
    if isinstance(data, list):
        if not data:
            raise SandboxError("the data set is an empty list of batches")
        return tuple(jnp.concatenate([jnp.asarray(b[i]) for b in data]) for i in range(2))
    x, y = data
    return jnp.asarray(x), jnp.asarray(y)


def laplace(model_fn: Callable, params, data, *, likelihood: str = "classification", structure: str = "full",
            subset=None, prior_precision=1.0, curvature: str = "ggn", sigma_noise: float = 1.0,
            rank: int = 20, key: jax.Array | None = None, chunk_size: int = 64) -> Posterior:
    """Fit a Laplace posterior for `model_fn(params, x_NxD) -> outputs_NxC` on data (x, y) or a list of them.

    structure: 'full' | 'diag' | 'kron' (dense layers) | 'lowrank' (top-`rank` eigenpairs, `key`).
    subset: None (all) or parameter-tree paths such as ["layer_2"]; prior_precision: scalar or one
    value per leaf of the subset; curvature: 'ggn' | 'hessian' (full, lowrank) | 'fisher' (empirical).
    """
    _check(likelihood, structure, curvature, sigma_noise)
    x, y = _as_arrays(data)
    for leaf in jax.tree_util.tree_leaves(params):
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise SandboxError("the parameters hold NaN or inf; fit the Laplace posterior at a finite MAP")
    sub = Subset.of(params, subset)
    prior_vector(prior_precision, sub.group_S, len(sub.paths), structure)  # validate early
    if structure == "full" and sub.dim ** 2 * jnp.dtype(sub.layout.dtype).itemsize > FULL_MAX_BYTES:
        gib = sub.dim ** 2 * jnp.dtype(sub.layout.dtype).itemsize / 2 ** 30
        raise SandboxError(f"structure='full' needs a {sub.dim} x {sub.dim} precision ({gib:.1f} GiB), over the "
                           f"{FULL_MAX_BYTES / 2 ** 30:.0f} GiB limit; use structure='kron', 'diag' or 'lowrank', "
                           "or a subset such as the last layer")
    theta = sub.theta(params)
    f = lambda th, xb: model_fn(sub.merge(params, th), xb)  # noqa: E731
    loss = float(jax.jit(lambda th: lik_lib.neg_log_lik(likelihood, f(th, x), y, sigma_noise))(theta))
    if structure in ("full", "lowrank"):
        op = _operator(f, theta, x, y, likelihood, curvature, sigma_noise)
        if structure == "full":
            curv = structures.Full(ops.dense(op))
        else:
            if key is None:
                raise SandboxError("structure='lowrank' needs a PRNG key, e.g. key=jax.random.key(0)")
            if not 1 <= rank <= sub.dim:
                raise SandboxError(f"rank={rank} must be in 1..{sub.dim}")
            pairs = ops.eigenpairs(op, rank, key=key, num_steps=min(sub.dim, max(2 * rank + 20, 40)))
            curv = structures.LowRank(jnp.maximum(pairs.values_K, 0.0), pairs.vectors_KxN)
    else:
        if curvature == "hessian":
            raise SandboxError(f"structure={structure!r} is built from Jacobians: use curvature='ggn' or 'fisher' "
                               "(the Hessian is available with 'full' and 'lowrank')")
        curv = _from_rows(f, theta, x, y, sub, likelihood, curvature, sigma_noise, structure, chunk_size)
    return Posterior(model_fn, params, sub, likelihood, sigma_noise, structure, curv, prior_precision,
                     loss, int(x.shape[0]))


def _check(lik, structure, curv, sigma_noise):
    lik_lib.check(lik, sigma_noise)
    if structure not in STRUCTURES:
        raise SandboxError(f"unknown structure {structure!r}; valid: {', '.join(map(repr, STRUCTURES))}")
    if curv not in CURVATURES:
        raise SandboxError(f"unknown curvature {curv!r}; valid: {', '.join(map(repr, CURVATURES))}")


def curvature_operator(model_fn: Callable, params, data, *, likelihood: str = "classification", subset=None,
                       curvature: str = "ggn", sigma_noise: float = 1.0):
    """The matrix-free curvature H of the summed NLL over the subset (a curvature.LinearOperator)."""
    _check(likelihood, "full", curvature, sigma_noise)
    x, y = _as_arrays(data)
    sub = Subset.of(params, subset)
    f = lambda th, xb: model_fn(sub.merge(params, th), xb)  # noqa: E731
    return _operator(f, sub.theta(params), x, y, likelihood, curvature, sigma_noise)


def _operator(f, theta, x, y, lik, curv, sigma_noise):
    """The toolkit's curvature operator of the summed NLL over theta_s."""
    model = lambda th, b: f(th, b[0])  # noqa: E731
    nll = lambda z, b: lik_lib.neg_log_lik(lik, z, b[1], sigma_noise)  # noqa: E731
    batch = (x, y)
    if curv == "ggn":
        return ops.ggn(model, nll, theta, batch)
    if curv == "hessian":
        return ops.hessian(lambda th, b: nll(model(th, b), b), theta, batch)
    n = x.shape[0]  # the toolkit's empirical Fisher is (1/N) sum_n g_n g_n^T of a mean loss
    op = ops.fisher(model, theta, batch, output_loss_fn=lambda z, b: nll(z, b) / n)
    return op.scaled(jnp.full(theta.shape, np.sqrt(n), theta.dtype))


def _from_rows(f, theta, x, y, sub, lik, curv, sigma_noise, structure, chunk_size):
    """diag / kron by summing per-example terms of the rows S^T J over chunks of the data."""
    offsets = kfac.offsets_of(sub.shapes)
    layers = kfac.dense_layers(sub.paths, sub.shapes) if structure == "kron" else None

    def one(xn, yn):
        z_C, vjp = jax.vjp(lambda th: f(th, xn[None])[0], theta)
        jac_CxP = jax.vmap(lambda u: vjp(u)[0])(jnp.eye(z_C.shape[0], dtype=z_C.dtype))
        s_CxK = lik_lib.sqrt_factor(lik, z_C, yn, sigma_noise, curv)
        if structure == "diag":
            return jnp.sum((s_CxK.T @ jac_CxP) ** 2, axis=0)
        return kfac.layer_terms(jac_CxP, s_CxK.T, offsets, sub.shapes, layers)

    total = chunked_sum(one, x, y, chunk_size)
    if structure == "diag":
        return structures.Diag(total)
    blocks = []
    for (w, b), (a_sum, b_mat) in zip(layers, total):
        blocks.append(structures.KronBlock.of(a_sum / x.shape[0], b_mat, offsets[w]))
        blocks.append(structures.KronBlock.of(jnp.ones((1, 1), b_mat.dtype), b_mat, offsets[b]))
    return structures.Kron(tuple(sorted(blocks, key=lambda blk: blk.start)))


def chunked_sum(fn, x, y, chunk_size):
    """sum_n fn(x_n, y_n) over the data, `chunk_size` examples at a time (vmapped), in one jit."""
    n = x.shape[0]
    c = max(1, min(chunk_size, n))
    pad = (-n) % c
    mask = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)]).astype(x.dtype)
    xp = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]) if pad else x
    yp = jnp.concatenate([y, jnp.repeat(y[:1], pad, 0)]) if pad else y

    @jax.jit
    def run(xp, yp, mask):
        chunks = jax.tree_util.tree_map(lambda a: a.reshape(-1, c, *a.shape[1:]), (xp, yp, mask))

        def step(acc, chunk):
            xc, yc, mc = chunk
            out = jax.vmap(fn)(xc, yc)
            out = jax.tree_util.tree_map(lambda o: jnp.tensordot(mc, o, axes=1), out)
            return jax.tree_util.tree_map(jnp.add, acc, out), None

        init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape[1:], s.dtype),
                                      jax.eval_shape(jax.vmap(fn), chunks[0][0], chunks[1][0]))
        return jax.lax.scan(step, init, chunks)[0]

    return run(xp, yp, mask)
