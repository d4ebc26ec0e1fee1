"""The Laplace posterior p(theta | D) ~ N(theta*, P^{-1}) around a trained network's MAP theta*.

Bayes: p(theta | D) = p(D | theta) p(theta) / p(D). With the prior N(0, diag(delta)^{-1}), a second-
order expansion of -log p(theta | D) at theta* gives a Gaussian whose precision is
    P = H + diag(delta),   H = curvature of -sum_n log p(y_n | f(theta, x_n))  at theta*,
with H the GGN (default), the Hessian or the empirical Fisher (as laplace-torch). `subset` keeps the
rest of the parameters fixed at the MAP (e.g. the last layer: Kristiadi et al. 2020). The full,
Hessian and low-rank curvatures come from the toolkit's operators (sandbox.curvature); diag and
kron come from per-example backward passes, never a per-example Jacobian (kfac.py). Fits and predictives
are compiled once per model function and subset and reused across fits and prior precisions.
"""

import dataclasses
import functools
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
CURVATURES = ("ggn", "hessian", "fisher")  # of `curvature.kinds.KINDS`: the ones diag and kron can also build
FULL_MAX_BYTES = 4 * 2 ** 30  # a dense P x P precision above this is refused


@dataclasses.dataclass(frozen=True, eq=False)
class Subset:
    """The chosen parameters as one flat vector theta_s, and the way back into the full tree.

    Equal (and hashed) by value: the layout and the chosen leaves. It is a static part of jitted fits
    and predictives, so a second posterior of the same model reuses their compiled programs.
    """
    layout: Layout          # of the whole params tree
    leaf_ids: tuple         # which leaves of the tree, in order
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
        group = np.concatenate([np.full(layout.sizes[i], g) for g, i in enumerate(chosen)])
        return Subset(layout, tuple(chosen), group)

    def _key(self):
        return self.layout, self.leaf_ids

    def __eq__(self, other):
        return isinstance(other, Subset) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    @property
    def paths(self):
        return tuple(self.layout.paths[i] for i in self.leaf_ids)

    @property
    def shapes(self):
        return tuple(self.layout.shapes[i] for i in self.leaf_ids)

    @property
    def dim(self):
        return int(self.group_S.size)

    def leaves(self, params) -> list:
        leaves = jax.tree_util.tree_leaves(params)
        return [leaves[i] for i in self.leaf_ids]

    def theta(self, params):
        return jnp.concatenate([jnp.ravel(leaf).astype(self.layout.dtype) for leaf in self.leaves(params)])

    def with_leaves(self, params, new_leaves):
        """The params tree with the subset's leaves replaced (the others untouched: no gradient flows there)."""
        leaves = jax.tree_util.tree_leaves(params)
        for i, leaf in zip(self.leaf_ids, new_leaves):
            leaves[i] = leaf
        return jax.tree_util.tree_unflatten(self.layout.treedef, leaves)

    def merge(self, params, theta_S):
        """The params tree with the subset replaced by theta_S."""
        offsets = kfac.offsets_of(self.shapes)
        parts = [theta_S[a:b].reshape(shape).astype(self.layout.dtypes[i])
                 for a, b, shape, i in zip(offsets[:-1], offsets[1:], self.shapes, self.leaf_ids)]
        return self.with_leaves(params, parts)


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
    loss = float(_loss(model_fn, params, x, y, likelihood, sigma_noise))
    if structure in ("full", "lowrank"):
        f = lambda th, xb: model_fn(sub.merge(params, th), xb)  # noqa: E731
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
        if structure == "kron":
            kfac.dense_layers(sub.paths, sub.shapes)  # raises unless every leaf sits in a dense layer with a bias
        curv = _from_rows(model_fn, sub, params, x, y, likelihood, curvature, sigma_noise, structure, chunk_size)
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
    """The toolkit's `curv` operator (`curvature.kinds`) of the summed NLL over theta_s: N times the
    kind's matrix of the mean NLL (the table's kinds are of a mean loss; Fisher: (1/N) sum_n g_n g_n^T)."""
    model = lambda th, b: f(th, b[0])  # noqa: E731
    n = x.shape[0]
    mean_nll = lambda z, b: lik_lib.neg_log_lik(lik, z, b[1], sigma_noise) / n  # noqa: E731
    op = ops.kinds.operator(curv, model, mean_nll, theta, (x, y))
    return op.scaled(jnp.full(theta.shape, np.sqrt(n), theta.dtype))


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _loss(model_fn, params, x, y, lik, sigma_noise):
    return lik_lib.neg_log_lik(lik, model_fn(params, x), y, sigma_noise)


def _from_rows(model_fn, sub, params, x, y, lik, curv, sigma_noise, structure, chunk_size):
    """diag / kron from per-example backward passes (kfac.py), summed a chunk of examples at a time."""
    n = x.shape[0]
    c = max(1, min(chunk_size, n))
    pad = (-n) % c
    mask = jnp.concatenate([jnp.ones(n, sub.layout.dtype), jnp.zeros(pad, sub.layout.dtype)])
    xp = jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]) if pad else x
    yp = jnp.concatenate([y, jnp.repeat(y[:1], pad, 0)]) if pad else y
    layer_sums, rest = _sums(model_fn, sub, params, xp, yp, mask, lik, curv, sigma_noise, structure, c)
    offsets = kfac.offsets_of(sub.shapes)
    layers, others = kfac.split_layers(sub.paths, sub.shapes)
    if structure == "diag":
        parts = {}
        for (w, b), (h_w, h_b) in zip(layers, layer_sums):
            parts[w], parts[b] = h_w.ravel(), h_b
        parts.update({i: r.ravel() for i, r in zip(others, rest)})
        return structures.Diag(jnp.concatenate([parts[i] for i in range(len(sub.shapes))]))
    blocks = []
    for (w, b), (a_sum, b_mat) in zip(layers, layer_sums):
        blocks.append(structures.KronBlock.of(a_sum / n, b_mat, offsets[w]))
        blocks.append(structures.KronBlock.of(jnp.ones((1, 1), b_mat.dtype), b_mat, offsets[b]))
    return structures.Kron(tuple(sorted(blocks, key=lambda blk: blk.start)))


@functools.partial(jax.jit, static_argnums=(0, 1, 6, 7, 8, 9, 10))
def _sums(model_fn, sub, params, xp, yp, mask, lik, curv, sigma_noise, structure, c):
    """The chunk sums of kfac.chunk_sums over the padded data, in one compiled scan (cached per model and subset)."""
    layers, others = kfac.split_layers(sub.paths, sub.shapes)
    leaves = sub.leaves(params)
    f = lambda lv, xb: model_fn(sub.with_leaves(params, lv), xb)  # noqa: E731
    chunks = jax.tree_util.tree_map(lambda a: a.reshape(-1, c, *a.shape[1:]), (xp, yp, mask))

    def step(acc, chunk):
        out = kfac.chunk_sums(f, leaves, *chunk, layers, others, lik, curv, sigma_noise, structure)
        return jax.tree_util.tree_map(jnp.add, acc, out), None

    first = jax.tree_util.tree_map(lambda a: a[0], chunks)
    init = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
        lambda ch: kfac.chunk_sums(f, leaves, *ch, layers, others, lik, curv, sigma_noise, structure), first))
    return jax.lax.scan(step, init, chunks)[0]
