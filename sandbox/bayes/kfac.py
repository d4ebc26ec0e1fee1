"""KFAC for dense layers s = a W + b: the GGN block of W is approximated by A (x) B.

Per example n the GGN of W is sum_k vec(a g_k^T) vec(a g_k^T)^T with g_k = J_s^T S[:, k]
(S S^T = Lambda, see likelihood.py), i.e. (a a^T) (x) (sum_k g_k g_k^T). KFAC ("expand", as in
curvlinops and laplace-torch) sums the two factors separately:
    A = (1/N) sum_n a_n a_n^T,      B = sum_n sum_k g_nk g_nk^T,
and the bias block is B itself (its "input" is 1). Both a and J_s are read off the model's
Jacobian with no access to its insides: dz/db = J_s, and dz/dW = a (x) dz/db row by row, so
a = sum_c dz_c/dW . dz_c/db / sum_c ||dz_c/db||^2 (exact for a dense layer with a bias).
"""

import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError


def dense_layers(paths: tuple, shapes: tuple) -> list:
    """[(w_index, b_index)] of the subset's leaves, which must pair up as {"w": Din x Dout, "b": Dout}."""
    by_parent = {}
    for i, path in enumerate(paths):
        parent, _, name = path.rpartition("/")
        by_parent.setdefault(parent, {})[name] = i
    layers = []
    for parent, leaves in by_parent.items():
        w, b = leaves.get("w"), leaves.get("b")
        if set(leaves) != {"w", "b"} or len(shapes[w]) != 2 or shapes[b] != shapes[w][1:]:
            raise SandboxError(f"structure='kron' needs dense layers {{'w': Din x Dout, 'b': Dout}}; "
                               f"{parent or 'the root'} holds {sorted(leaves)} with shapes "
                               f"{[shapes[i] for i in leaves.values()]}; use structure='diag', 'full' or 'lowrank'")
        layers.append((w, b))
    return layers


def layer_terms(jac_CxP, rows_KxC, offsets, shapes, layers):
    """Per-example contributions [(a a^T, sum_k g_k g_k^T)] for each dense layer."""
    out = []
    for w, b in layers:
        din, dout = shapes[w]
        jw_CxIxO = jac_CxP[:, offsets[w]:offsets[w] + din * dout].reshape(-1, din, dout)
        jb_CxO = jac_CxP[:, offsets[b]:offsets[b] + dout]
        norm = jnp.sum(jb_CxO ** 2)
        a_I = jnp.einsum("cio,co->i", jw_CxIxO, jb_CxO) / jnp.where(norm > 0, norm, 1.0)
        g_KxO = rows_KxC @ jb_CxO
        out.append((jnp.outer(a_I, a_I), g_KxO.T @ g_KxO))
    return out


def offsets_of(shapes) -> list:
    return [int(x) for x in np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in shapes])])]


def softmax_head_factors(phi_NxD, probs_NxC):
    """KFAC of a linear softmax head z = phi W (exact J_s = I): A = phi^T phi / N, B = sum_n Lambda_n."""
    n = phi_NxD.shape[0]
    return phi_NxD.T @ phi_NxD / n, jnp.diag(jnp.sum(probs_NxC, 0)) - probs_NxC.T @ probs_NxC
