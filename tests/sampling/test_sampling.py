"""Tests for sandbox.sampling: filters, sample_next, and generate against a hand rollout."""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import losses, nn, sampling

RNG = np.random.default_rng(0)


def test_top_k_keeps_exactly_k_finite_logits_even_with_ties():
    logits = jnp.asarray(RNG.standard_normal((5, 20), np.float32))
    filtered = sampling.top_k_filter(logits, 4)
    assert np.all(np.isfinite(np.asarray(filtered)).sum(-1) == 4)
    kept = np.where(np.isfinite(filtered), np.asarray(logits), np.inf).min(-1)
    dropped = np.where(np.isfinite(filtered), -np.inf, np.asarray(logits)).max(-1)
    assert np.all(kept > dropped)  # the k kept are the k largest
    ties = sampling.top_k_filter(jnp.zeros((1, 9)), 3)
    assert int(jnp.isfinite(ties).sum()) == 3


def test_top_p_keeps_the_smallest_set_with_mass_at_least_p():
    logits = RNG.standard_normal((50, 8)) * 2
    for p in (0.3, 0.7, 0.95):
        keep = np.isfinite(np.asarray(sampling.top_p_filter(jnp.asarray(logits), p)))
        for row, kept in zip(logits, keep):
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            ranked = np.sort(probs)[::-1]
            n_needed = int(np.argmax(np.cumsum(ranked) >= p - 1e-6)) + 1  # smallest prefix with mass >= p
            assert kept.sum() == n_needed
            assert probs[kept].min() >= probs[~kept].max(initial=0.0)


def test_sample_next_draws_from_tempered_softmax():
    logits = jnp.log(jnp.array([[0.1, 0.2, 0.3, 0.4]]))
    keys = jax.random.split(jax.random.key(0), 20000)
    draw = jax.jit(jax.vmap(lambda k: sampling.sample_next(k, logits, sampling.SamplingOptions(temperature=0.5))[0]))
    freq = np.bincount(np.asarray(draw(keys)), minlength=4) / 20000
    expected = np.array([0.1, 0.2, 0.3, 0.4]) ** 2
    np.testing.assert_allclose(freq, expected / expected.sum(), atol=0.015)


def test_sample_next_greedy_and_top_k_1_are_argmax():
    logits = jnp.asarray(RNG.standard_normal((6, 10), np.float32))
    key = jax.random.key(1)

    @jax.jit
    def draws(logits):
        return (
            sampling.sample_next(key, logits, sampling.GREEDY),
            sampling.sample_next(key, logits, sampling.SamplingOptions(top_k=1)),
            sampling.sample_next(key, logits, sampling.SamplingOptions(top_p=1e-6)),
            sampling.sample_next(key, jnp.zeros((200, 10))),
        )

    greedy, top_1, top_p_tiny, uniform = draws(logits)
    for tokens in (greedy, top_1, top_p_tiny):
        np.testing.assert_array_equal(tokens, jnp.argmax(logits, -1))
    assert len(np.unique(np.asarray(uniform))) > 5  # T > 0 does sample


def test_greedy_generate_equals_hand_argmax_rollout():
    num_new = 9  # 3 prompt + 9 new > seq_len 6: the window first grows, then slides
    cfg = nn.ModelConfig(vocab_size=11, seq_len=6, d_model=16, n_layers=1, n_heads=2, d_ff=16, init_std=0.5)
    params = nn.init(jax.random.key(2), cfg)
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    tokens, entropies = sampling.generate(params, cfg, prompt, num_new, jax.random.key(3), sampling.GREEDY)
    assert tokens.shape == (2, 3 + num_new) and entropies.shape == (2, num_new)

    apply = jax.jit(nn.apply, static_argnums=2)
    expected, expected_entropies = np.asarray(prompt), []
    for _ in range(num_new):
        logits = apply(params, jnp.asarray(expected[:, -cfg.seq_len :]), cfg)[:, -1]
        expected_entropies.append(losses.entropy(logits))
        expected = np.concatenate([expected, np.asarray(jnp.argmax(logits, -1))[:, None]], axis=1)
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_allclose(entropies, np.stack(expected_entropies, 1), rtol=1e-5)
    assert len(np.unique(expected[:, 3:])) > 1  # the rollout is not a constant
