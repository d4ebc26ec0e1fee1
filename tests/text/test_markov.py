"""Markov sources: the exact entropy rate against a brute-force enumeration and against samples."""

import itertools

import numpy as np
import pytest

from sandbox.errors import SandboxError
from sandbox.text import markov


def test_stationary_distribution_is_fixed_point():
    cfg = markov.MarkovConfig(order=2, alphabet=3, concentration=0.5, seed=3)
    P = markov.transition_table(cfg)
    pi = markov.stationary(P, cfg.alphabet)
    T = np.zeros((9, 9))  # the dense context-to-context transition matrix, built by hand
    for a, b, y in itertools.product(range(3), repeat=3):
        T[a * 3 + b, b * 3 + y] = P[a * 3 + b, y]
    np.testing.assert_allclose(pi @ T, pi, atol=1e-12)
    assert abs(pi.sum() - 1) < 1e-12


def test_entropy_rate_matches_block_entropy_difference():
    """H = lim H(X_1..X_n) - H(X_1..X_{n-1}); exact for n > order when started stationary."""
    cfg = markov.MarkovConfig(order=1, alphabet=3, concentration=0.7, seed=1)
    P = markov.transition_table(cfg)
    pi = markov.stationary(P, 3)

    def block_entropy(n):
        h = 0.0
        for seq in itertools.product(range(3), repeat=n):
            p = pi[seq[0]] * np.prod([P[a, b] for a, b in zip(seq, seq[1:])])
            h -= p * np.log(p) if p > 0 else 0.0
        return h

    assert markov.entropy_rate(cfg) == pytest.approx(block_entropy(4) - block_entropy(3), rel=1e-9)


def test_empirical_conditional_entropy_of_samples():
    cfg = markov.MarkovConfig(order=2, alphabet=4, concentration=0.3, length=100_000, seed=0)
    x = markov.sample(cfg)
    assert x.min() >= 0 and x.max() < 4
    counts = np.zeros((16, 4))
    np.add.at(counts, (x[:-2] * 4 + x[1:-1], x[2:]), 1)
    p = counts / counts.sum(1, keepdims=True).clip(1)
    w = counts.sum(1) / counts.sum()
    empirical = -(w[:, None] * p * np.log(np.where(p > 0, p, 1))).sum()
    assert empirical == pytest.approx(markov.entropy_rate(cfg), rel=0.02)


def test_bad_markov_config():
    with pytest.raises(SandboxError, match="alphabet"):
        markov.MarkovConfig(alphabet=0)
