"""Bring your own model: a flax.linen and a flax.nnx model through the curvature operators (exact in
float64), the analysis functions, compression (via the inferred parameter groups) and the optimizers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import enable_x64

from sandbox import curvature, losses, optim
from sandbox.analysis import CurvatureOptions, flax_models
from sandbox.analysis import curvature as acurv
from sandbox.compress import methods, sweep
from sandbox.errors import SandboxError
from sandbox.nn import groups as groups_lib
from sandbox.optim.config import OptimizerConfig

V, D, F = 5, 3, 4


class LinenLM(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.gelu(nn.Dense(F)(nn.Embed(V, D)(x)))
        return nn.Dense(V)(nn.LayerNorm()(h))


class NnxLM(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(V, D, rngs=rngs)
        self.up = nnx.Linear(D, F, rngs=rngs)
        self.norm = nnx.LayerNorm(F, rngs=rngs)
        self.out = nnx.Linear(F, V, rngs=rngs)

    def __call__(self, x):
        return self.out(self.norm(nnx.gelu(self.up(self.embed(x)))))


def _batch():
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 6), 0, V)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}


def _model(kind: str):
    """(logits_fn, params) of a freshly initialised flax model of `kind`."""
    if kind == "linen":
        module = LinenLM()
        return flax_models.from_linen(module, module.init(jax.random.PRNGKey(0), _batch()["inputs"]))
    return flax_models.from_nnx(NnxLM(nnx.Rngs(0)))


def _loss(logits_fn):
    return lambda p, b: losses.cross_entropy(logits_fn(p, b), b["targets"]).mean()


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_hessian_and_its_spectrum_are_exact_on_a_flax_model(kind):
    with enable_x64():
        logits_fn, params = _model(kind)
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        batch = _batch()
        op = acurv.operator("hessian", logits_fn, params, batch, jax.random.PRNGKey(2))
        layout = curvature.Layout.of(params)
        exact = jax.jit(jax.hessian(lambda w: _loss(logits_fn)(layout.unravel(w), batch)))(layout.ravel(params))
        np.testing.assert_allclose(curvature.dense(op), exact, atol=1e-10)
        groups = groups_lib.infer(params)
        assert {g: len(p) for g, p in groups.items()} == {"embeddings": 1, "norms": 1, "linear": 2}
        # per-block spectra for nnx here; the README's linen example runs them too (tests/test_readme_python.py)
        opts = CurvatureOptions(top_k=3, num_steps=op.dim, blocks=kind == "nnx")
        result = acurv.analyse(logits_fn, params, batch, opts)
        # flax's LayerNorm reduces in float32 even for float64 inputs, so H v carries ~1e-8 relative noise
        np.testing.assert_allclose(result["top_eigenvalues"], np.linalg.eigvalsh(exact)[::-1][:3], rtol=1e-6)
        if kind == "linen":
            return
        linear = groups["linear"][0]
        start, stop, _ = layout.block(linear)
        block_exact = np.linalg.eigvalsh(exact[start:stop, start:stop])[::-1][:3]
        np.testing.assert_allclose(result["blocks"][linear]["top_eigenvalues"], block_exact, rtol=1e-6)


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_compression_reaches_flax_dense_kernels_through_the_groups(kind):
    logits_fn, params = _model(kind)
    batch = _batch()
    loss = jax.jit(_loss(logits_fn))
    seen = []

    def evaluate(p):
        seen.append(p)
        return {"loss": float(loss(p, batch))}

    rows = sweep.run(params, "svd", [{"rank": 1}, {"rank": 2}], evaluate)
    # two Dense kernels, D x F and F x V: rank k keeps k (M + N) of M N weights
    dense = D * F + F * V
    assert [r["kept_fraction"] for r in rows] == pytest.approx([k * (D + F + F + V) / dense for k in (1, 2)])
    kernels = [np.asarray(x) for x in jax.tree.leaves(seen[0]) if np.ndim(x) == 2 and x.shape != (V, D)]
    assert sorted(np.linalg.matrix_rank(k) for k in kernels) == [1, 1]
    assert jax.tree.structure(seen[0]) == jax.tree.structure(params)  # the flax model runs unchanged
    embedding = [x for x in jax.tree.leaves(seen[0]) if np.shape(x) == (V, D)]
    np.testing.assert_array_equal(embedding[0], [x for x in jax.tree.leaves(params) if np.shape(x) == (V, D)][0])
    pruned = sweep.run(params, "prune", [{"sparsity": 0.5}], evaluate)
    assert pruned[0]["kept_fraction"] == pytest.approx(0.5, abs=0.05)
    with pytest.raises(SandboxError, match="flax Dense kernels"):
        from sandbox.compress import model as cmodel

        cmodel.calibrate(logits_fn, params, [batch])
    assert methods.get("svd-whiten").needs_calibration


# one plain first-order, the matrix-aware (Newton-Schulz on 2-D leaves) and the Hessian-probing one:
# the registry builds all of them the same way, so these three reach every code path a model can hit
OPTIMIZERS = {"adamw": 0.02, "muon": 0.02, "sophia": 0.01}


@pytest.mark.parametrize("kind", ["linen", "nnx"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_sandbox_optimizer_trains_a_flax_model(kind, name):
    logits_fn, params = _model(kind)
    batch = _batch()
    loss_fn = _loss(logits_fn)
    opt = optim.build(OptimizerConfig(name=name, learning_rate=OPTIMIZERS[name]), 20)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, state = opt.update(grads, state, params, obj_fn=lambda p: loss_fn(p, batch))
        return optax.apply_updates(params, updates), state, value

    state = opt.init(params)
    first = None
    for _ in range(20):
        params, state, value = step(params, state)
        first = value if first is None else first
    assert float(loss_fn(params, batch)) < 0.9 * float(first)
