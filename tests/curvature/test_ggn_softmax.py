"""The closed-form softmax cross-entropy GGN against autodiff (float64, a tiny transformer LM)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import curvature
from sandbox.curvature.ggn_softmax import softmax_ggn, softmax_hessian_vp
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig

CFG = ModelConfig(vocab_size=13, seq_len=5, d_model=8, n_layers=1, n_heads=2, d_ff=16, init_std=0.5)


def logits_fn(params, batch):
    return transformer.apply(params, batch["inputs"], CFG)


def token_ce(logits_BxLxV, batch):
    logp = jax.nn.log_softmax(logits_BxLxV)
    return -jnp.mean(jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1))


@pytest.fixture(scope="module")
def lm():
    with jax.enable_x64(True):
        k_init, k_tok = jax.random.split(jax.random.key(0))
        params = jax.tree.map(lambda x: x.astype(jnp.float64), transformer.init(k_init, CFG))
        tokens = jax.random.randint(k_tok, (3, 6, CFG.seq_len + 1), 0, CFG.vocab_size)
        batches = [{"inputs": t[:, :-1], "targets": t[:, 1:]} for t in tokens]
        yield params, batches


def test_output_hessian_product_equals_the_dense_hessian_of_cross_entropy():
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
        z_NxV = 3 * jax.random.normal(k1, (4, 7), jnp.float64)
        u_NxV = jax.random.normal(k2, (4, 7), jnp.float64)
        y_N = jax.random.randint(k3, (4,), 0, 7)
        ce = lambda z: token_ce(z.reshape(4, 7), {"targets": y_N})  # noqa: E731
        h = jax.hessian(ce)(z_NxV.ravel())  # 28 x 28, every row's V x V block
        np.testing.assert_allclose(softmax_hessian_vp(z_NxV, u_NxV).ravel(), h @ u_NxV.ravel(), atol=1e-14)


def test_closed_form_ggn_equals_the_autodiff_ggn(lm):
    params, batches = lm
    with jax.enable_x64(True):
        dim = curvature.Layout.of(params).dim
        v_KxN = jax.random.normal(jax.random.key(1), (4, dim), jnp.float64)

        @jax.jit
        def products(p, b):  # G v for 4 random v, closed form and autodiff, one compiled program
            closed = jax.vmap(softmax_ggn(logits_fn, p, b).mv)(v_KxN)
            return closed, jax.vmap(curvature.ggn(logits_fn, token_ce, p, b).mv)(v_KxN)

        closed, auto = products(params, batches[0])
        assert dim > 700 and np.abs(auto).max() > 1e-3
        np.testing.assert_allclose(closed, auto, rtol=1e-11, atol=1e-13 * np.abs(auto).max())
        # a dataset (a list of batches) is the mean over its batches
        closed, auto = products(params, batches)
        np.testing.assert_allclose(closed, auto, rtol=1e-11, atol=1e-13 * np.abs(auto).max())
