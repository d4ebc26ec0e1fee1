"""Curvature of the sandbox's tiny transformer LM (float64, ~700 params), and on 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sandbox import curvature
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig

CFG = ModelConfig(vocab_size=11, seq_len=5, d_model=8, n_layers=1, n_heads=2, d_ff=16,
                  init_std=0.5)


def logits_fn(params, batch):
    return transformer.apply(params, batch["inputs"], CFG)


def token_ce(logits_BxLxV, batch):
    logp = jax.nn.log_softmax(logits_BxLxV)
    return -jnp.mean(jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1))


def lm_loss(params, batch):
    return token_ce(logits_fn(params, batch), batch)


@pytest.fixture(scope="module")
def lm():
    with jax.enable_x64(True):
        k_init, k_tok = jax.random.split(jax.random.key(0))
        params = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64),
                                        transformer.init(k_init, CFG))
        tokens = jax.random.randint(k_tok, (8, CFG.seq_len + 1), 0, CFG.vocab_size)
        batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
        flat, unravel = ravel_pytree(params)
        h = jax.jit(jax.hessian(lambda w: lm_loss(unravel(w), batch)))(flat)
        yield params, batch, flat, np.asarray(h), np.linalg.eigvalsh(h)


@pytest.mark.slow
def test_hessian_block_and_lanczos_are_exact_on_the_transformer(lm):
    params, batch, flat, h, eigs = lm
    op = curvature.hessian(lm_loss, params, batch)
    assert 500 < op.dim == flat.size
    np.testing.assert_allclose(curvature.dense(op), h, atol=1e-10)
    vals, _ = curvature.top_eigenpairs(op, k=5, key=jax.random.key(1), num_steps=120)
    np.testing.assert_allclose(vals, eigs[::-1][:5], rtol=1e-8)
    # The block is found independently: the flat positions of the leaves under block_0/attn.
    marks = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.full(x.shape, jax.tree_util.keystr(path).startswith("['block_0']['attn']")),
        params)
    idx = np.flatnonzero(ravel_pytree(marks)[0])
    np.testing.assert_allclose(curvature.dense(op.block("block_0/attn")), h[np.ix_(idx, idx)],
                               atol=1e-10)


@pytest.mark.slow
def test_ggn_of_the_transformer_is_psd_unlike_the_hessian(lm):
    params, batch, _, h, eigs = lm
    g = np.asarray(curvature.dense(curvature.ggn(logits_fn, token_ce, params, batch)))
    np.testing.assert_allclose(g, g.T, atol=1e-12)
    assert np.linalg.eigvalsh(g).min() > -1e-10 * np.abs(g).max()
    # The Hessian minus the GGN is the residual term sum_i r_i * d2 z_i, which has negative
    # directions the GGN lacks: the Hessian's bottom eigenvalue is below the GGN's.
    assert eigs.min() < np.linalg.eigvalsh(g).min()


@pytest.mark.slow
def test_sharded_batch_gives_the_single_device_hvp_and_lanczos(lm):
    params, batch, flat, *_ = lm
    assert len(jax.devices()) >= 8, "tests/conftest.py sets XLA_FLAGS to simulate 8 CPU devices"
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    replicated = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    assert len(sharded["inputs"].sharding.device_set) == 8
    v = jax.random.normal(jax.random.key(2), flat.shape)

    @jax.jit
    def hvp_and_ritz(op):  # one compiled program per placement: an HVP and a 30-step Lanczos
        theta_M, s_MxM = curvature.tridiagonal_eigh(curvature.lanczos(op, v, 30))
        return op.mv(v), theta_M, s_MxM[0]

    want = hvp_and_ritz(curvature.hessian(lm_loss, params, batch))
    got = hvp_and_ritz(curvature.hessian(lm_loss, replicated, sharded))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1][-3:], want[1][-3:], rtol=1e-9)  # top Ritz values
    np.testing.assert_allclose(np.abs(got[2][-3:]), np.abs(want[2][-3:]), rtol=1e-6, atol=1e-12)
