"""Random k-th order Markov sources and their exact entropy rate.

A source over an alphabet of A symbols draws x_t from P(x_t | x_{t-k..t-1}), a table of
A^k rows each drawn from Dirichlet(concentration). Low concentration gives peaked rows, hence
a low entropy rate. The entropy rate is the Bayes-optimal next-token loss a model can reach:

    H = sum_s pi(s) * H(P(. | s))   (nats),

where pi is the stationary distribution of the chain on contexts s = (x_{t-k}, ..., x_{t-1}).
"""

from dataclasses import dataclass

import numpy as np

from sandbox import validate
from sandbox.errors import SandboxError


@dataclass(frozen=True)
class MarkovConfig:
    order: int = 2
    alphabet: int = 8
    concentration: float = 0.2
    length: int = 200_000
    seed: int = 0

    def __post_init__(self):
        for name in ("order", "alphabet", "length"):
            validate.positive_int("data.markov", name, getattr(self, name))
        if self.alphabet ** self.order > 1_000_000:
            raise SandboxError("data.markov: alphabet**order must be at most 1e6 contexts")
        validate.positive_number("data.markov", "concentration", self.concentration)


def transition_table(cfg: MarkovConfig) -> np.ndarray:
    """P[s, y] = P(next = y | context index s), shape A^k x A, rows drawn from Dirichlet."""
    rng = np.random.default_rng(cfg.seed)
    return rng.dirichlet(np.full(cfg.alphabet, cfg.concentration), size=cfg.alphabet**cfg.order)


def stationary(P_SxA: np.ndarray, alphabet: int) -> np.ndarray:
    """Stationary distribution over contexts: the fixed point of pi <- pi T, by power iteration.

    Context s = (x1..xk) (base-A digits, x1 most significant) moves to s' = (x2..xk, y) with
    probability P[s, y], so s' = (s mod A^(k-1)) * A + y.
    """
    num_contexts = P_SxA.shape[0]
    nxt_S = (np.arange(num_contexts) % (num_contexts // alphabet)) * alphabet
    pi = np.full(num_contexts, 1.0 / num_contexts)
    for _ in range(10_000):
        new = np.zeros_like(pi)
        np.add.at(new, nxt_S[:, None] + np.arange(alphabet)[None, :], pi[:, None] * P_SxA)
        # average with the old iterate: lazy chain, same fixed point, no periodic oscillation
        new = 0.5 * (new + pi)
        if np.abs(new - pi).sum() < 1e-15:
            return new
        pi = new
    return pi


def entropy_rate(cfg: MarkovConfig) -> float:
    """Exact entropy rate in nats per symbol."""
    P = transition_table(cfg)
    pi = stationary(P, cfg.alphabet)
    row_entropy = -(P * np.log(np.where(P > 0, P, 1.0))).sum(axis=1)
    return float(pi @ row_entropy)


def sample(cfg: MarkovConfig) -> np.ndarray:
    """A sequence of cfg.length symbols (int32) from the source, started from a uniform context."""
    P = transition_table(cfg)
    rng = np.random.default_rng(cfg.seed + 1)
    cum = np.cumsum(P, axis=1)
    u = rng.random(cfg.length)
    width = cfg.alphabet ** (cfg.order - 1)
    out = np.empty(cfg.length, dtype=np.int32)
    s = int(rng.integers(P.shape[0]))
    for t in range(cfg.length):
        y = min(int(np.searchsorted(cum[s], u[t], side="right")), cfg.alphabet - 1)
        out[t] = y
        s = (s % width) * cfg.alphabet + y
    return out
