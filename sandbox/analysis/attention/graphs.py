"""Attention matrices as graphs: entropy, Markov chains, rollout and flow (float64 numpy).

Each head's L x L weight matrix P is row-stochastic, so it is a Markov chain on positions: a
walker at query i steps to key j with probability P[i, j].
- entropy of a row, H(P[i]) = -sum_j P[i, j] log P[i, j] (nats): 0 for a head that looks at one
  token, log(number of keys) for a uniform one;
- stationary distribution pi = pi P (the left eigenvector of eigenvalue 1) and spectral gap
  1 - |lambda_2| (how fast the chain forgets where it started); a causal head is lower
  triangular, so position 0 is absorbing and pi = e_0: mass flows to the first token, where
  attention sinks form;
- rollout (Abnar & Zuidema 2020): with the residual stream each layer mixes
  A~ = (1 - r) A + r I (r = 1/2, heads averaged), and the influence of input j on output i
  after N layers is the product R = A~_N ... A~_1;
- flow: the layered graph with node (l, i) for position i after layer l and an edge
  (l, j) -> (l + 1, i) of capacity A~_l[i, j]; flow[i, j] is the maximum flow from input j to
  output i (Edmonds-Karp: shortest augmenting paths, found by breadth-first search).
"""

from collections import deque

import numpy as np


def row_entropy(att_NxHxLxL, valid_L=None) -> np.ndarray:
    """entropy_NxH: the mean over query rows (the valid ones) of H(P[i]) in nats."""
    p = np.asarray(att_NxHxLxL, np.float64)
    h_NxHxL = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    valid_L = np.ones(p.shape[-2], bool) if valid_L is None else np.asarray(valid_L, bool)
    return h_NxHxL[..., valid_L].mean(axis=-1)


def stationary(p_LxL) -> np.ndarray:
    """pi with pi P = pi and sum pi = 1 (least squares on [P^T - I; 1^T] pi = [0; 1]: exact when
    the chain has a single closed class, as a causal head does)."""
    p = np.asarray(p_LxL, np.float64)
    n = p.shape[0]
    system = np.vstack([p.T - np.eye(n), np.ones((1, n))])
    pi, *_ = np.linalg.lstsq(system, np.append(np.zeros(n), 1.0), rcond=None)
    return pi


def spectral_gap(p_LxL) -> float:
    """1 - |lambda_2|, lambda_2 the second largest eigenvalue of P in modulus."""
    moduli = np.sort(np.abs(np.linalg.eigvals(np.asarray(p_LxL, np.float64))))[::-1]
    return float(1.0 - moduli[1]) if len(moduli) > 1 else 1.0


def markov_summary(att_NxHxLxL) -> dict:
    """Per layer and head (N x H arrays): spectral gap, stationary mass on the first token, and
    the mean attention the queries pay to the first token."""
    att = np.asarray(att_NxHxLxL, np.float64)
    n, h = att.shape[:2]
    gap, pi0 = np.zeros((n, h)), np.zeros((n, h))
    for i in range(n):
        for j in range(h):
            gap[i, j] = spectral_gap(att[i, j])
            pi0[i, j] = stationary(att[i, j])[0]
    return {"spectral_gap": gap, "stationary_first": pi0, "first_token_mass": att[..., 0].mean(axis=-1)}


def with_residual(att_NxLxL, residual: float = 0.5) -> np.ndarray:
    """A~ = (1 - r) A + r I for every layer: the residual stream as half of each mixing step."""
    att = np.asarray(att_NxLxL, np.float64)
    return (1.0 - residual) * att + residual * np.eye(att.shape[-1])


def rollout(att_NxLxL, residual: float = 0.5) -> np.ndarray:
    """R_LxL = A~_N ... A~_1: R[i, j] is the share of output i traced back to input j."""
    mixed = with_residual(att_NxLxL, residual)
    out = np.eye(mixed.shape[-1])
    for a in mixed:
        out = a @ out
    return out


def max_flow(cap_VxV: np.ndarray, source: int, sink: int, eps: float = 1e-12) -> float:
    """The value of a maximum source -> sink flow (Edmonds-Karp on a dense capacity matrix)."""
    residual = np.array(cap_VxV, np.float64)
    total = 0.0
    while True:
        parent = np.full(len(residual), -1)
        parent[source] = source
        queue = deque([source])
        while queue and parent[sink] < 0:
            u = queue.popleft()
            for v in np.flatnonzero((residual[u] > eps) & (parent < 0)):
                parent[v] = u
                queue.append(v)
        if parent[sink] < 0:
            return total
        path, v = [], sink
        while v != source:
            path.append((parent[v], v))
            v = parent[v]
        push = min(residual[u, v] for u, v in path)
        for u, v in path:
            residual[u, v] -= push
            residual[v, u] += push
        total += push


def layered_capacities(att_NxLxL, residual: float = 0.5) -> np.ndarray:
    """Capacity matrix of the layered graph: node l * L + i is position i after layer l."""
    mixed = with_residual(att_NxLxL, residual)
    n, length = mixed.shape[0], mixed.shape[-1]
    cap = np.zeros(((n + 1) * length, (n + 1) * length))
    for l, a in enumerate(mixed):
        cap[l * length : (l + 1) * length, (l + 1) * length : (l + 2) * length] = a.T  # (l, j) -> (l+1, i)
    return cap


def flow(att_NxLxL, residual: float = 0.5) -> np.ndarray:
    """F_LxL[i, j] = max flow from input position j to output position i through the layers."""
    cap = layered_capacities(att_NxLxL, residual)
    n, length = np.asarray(att_NxLxL).shape[0], np.asarray(att_NxLxL).shape[-1]
    out = np.zeros((length, length))
    for i in range(length):
        for j in range(length):
            out[i, j] = max_flow(cap, j, n * length + i)
    return out
