"""Attention as graphs: capture changes no output; Markov statistics, rollout and flow are exact."""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from sandbox.analysis.attention.capture import lm_attention, minilm_attention
from sandbox.analysis.attention.graphs import (
    flow,
    layered_capacities,
    markov_summary,
    max_flow,
    rollout,
    row_entropy,
    spectral_gap,
    stationary,
)
from sandbox.nn.config import ModelConfig
from sandbox.nn.transformer import apply, init


def _stochastic(rng, *shape):
    a = rng.random(shape) ** 3
    return a / a.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("extra", [dict(pos_encoding="learned"), dict(pos_encoding="rope"),
                                   dict(pos_encoding="rope", n_kv_heads=2, norm="rmsnorm", norm_eps=1e-6)])
def test_capturing_lm_attention_leaves_logits_bit_identical(extra):
    cfg = ModelConfig(vocab_size=50, seq_len=12, d_model=16, n_layers=2, n_heads=4, d_ff=32, **extra)
    params = init(jax.random.PRNGKey(0), cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 10), 0, 50)
    logits, att = jax.jit(lm_attention, static_argnames="cfg")(params, tokens, cfg)
    plain = jax.jit(apply, static_argnames="cfg")(params, tokens, cfg)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(plain))
    assert att.shape == (2, 2, 4, 10, 10)
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-6)
    assert float(jnp.abs(jnp.triu(att, 1)).max()) == 0.0  # causal: no weight on later keys


def test_capturing_minilm_attention_leaves_embeddings_bit_identical():
    from sandbox.pretrained import minilm

    model = minilm.load()
    ids, mask = model.tokenize(["attention is a graph", "a longer sentence than the first one is"])
    emb, att = jax.jit(minilm_attention, static_argnames="cfg")(model.params, ids, mask, model.cfg)
    plain = jax.jit(minilm.encode, static_argnames="cfg")(model.params, ids, mask, model.cfg)
    np.testing.assert_array_equal(np.asarray(emb), np.asarray(plain))
    assert att.shape == (6, 2, 12, ids.shape[1], ids.shape[1])
    assert float(att[:, 0, :, :, int(mask[0].sum()):].max()) == 0.0  # padding gets no attention


def test_markov_statistics_of_small_chains():
    rng = np.random.default_rng(0)
    p = _stochastic(rng, 6, 6)
    pi = stationary(p)
    np.testing.assert_allclose(pi @ p, pi, atol=1e-12)
    power = np.full(6, 1 / 6) @ np.linalg.matrix_power(p, 200)  # the approximate way: run the chain
    np.testing.assert_allclose(pi, power, atol=1e-10)
    assert spectral_gap(np.full((4, 4), 0.25)) == pytest.approx(1.0)  # forgets in one step
    assert spectral_gap(np.eye(3)[[1, 2, 0]]) == pytest.approx(0.0, abs=1e-12)  # a cycle never forgets
    causal = np.tril(rng.random((5, 5)) + 0.1)
    causal /= causal.sum(-1, keepdims=True)
    out = markov_summary(causal[None, None])
    assert out["stationary_first"][0, 0] == pytest.approx(1.0)  # token 0 is absorbing: the sink
    assert out["first_token_mass"][0, 0] == pytest.approx(causal[:, 0].mean())
    # triangular: the eigenvalues are the diagonal
    assert out["spectral_gap"][0, 0] == pytest.approx(1 - np.sort(np.diag(causal))[-2])
    assert row_entropy(np.full((1, 1, 3, 4), 0.25))[0, 0] == pytest.approx(np.log(4))


def test_rollout_of_one_layer_is_its_attention_with_the_residual():
    a = _stochastic(np.random.default_rng(1), 1, 5, 5)
    np.testing.assert_allclose(rollout(a), 0.5 * a[0] + 0.5 * np.eye(5), atol=1e-15)
    two = _stochastic(np.random.default_rng(2), 2, 5, 5)
    np.testing.assert_allclose(rollout(two), (0.5 * two[1] + 0.5 * np.eye(5)) @ (0.5 * two[0] + 0.5 * np.eye(5)))


def test_flow_equals_networkx_max_flow():
    rng = np.random.default_rng(3)
    att = _stochastic(rng, 3, 4, 4)
    f = flow(att)
    cap = layered_capacities(att)
    graph = nx.DiGraph()
    for u, v in zip(*np.nonzero(cap)):
        graph.add_edge(int(u), int(v), capacity=float(cap[u, v]))
    for i in range(4):
        for j in range(4):
            assert f[i, j] == pytest.approx(nx.maximum_flow_value(graph, j, 12 + i), abs=1e-9)
    dense = rng.random((7, 7)) * (rng.random((7, 7)) < 0.5)  # a general graph, not layered
    g2 = nx.DiGraph()
    g2.add_nodes_from(range(7))
    for u, v in zip(*np.nonzero(dense)):
        g2.add_edge(int(u), int(v), capacity=float(dense[u, v]))
    assert max_flow(dense, 0, 6) == pytest.approx(nx.maximum_flow_value(g2, 0, 6), abs=1e-9)
