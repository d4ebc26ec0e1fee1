"""Per-example curvature of dense layers s = a W + b, read from backward passes: KFAC (A (x) B) and the GGN diagonal.

Per example n the GGN of W is sum_k vec(a g_k^T) vec(a g_k^T)^T with g_k = J_s^T S[:, k]
(S S^T = Lambda, see likelihood.py), i.e. (a a^T) (x) (sum_k g_k g_k^T). KFAC ("expand", as in
curvlinops and laplace-torch) sums the two factors separately:
    A = (1/N) sum_n a_n a_n^T,      B = sum_n sum_k g_nk g_nk^T,
and the bias block is B itself (its "input" is 1); the GGN diagonal of W is sum_n a_n^2 (x) sum_k g_nk^2.
Both a and g come out of backward passes with no access to the model's insides, and no per-example
Jacobian is ever formed:
- g_nk is the bias cotangent of the vjp with cotangent S[:, k], taken with respect to the biases alone
  (so no weight outer products are built: K backward sweeps of matrix-vector products);
- a_n comes from ONE vjp with respect to the dense leaves with a fixed probe cotangent u: it returns
  dW = a d^T and db = d (d = J_s^T u), so a = dW d / ||d||^2, exact up to rounding whatever d's size (zero
  only if the layer's output does not reach the outputs at all, when the layer adds nothing to the GGN).
Sums over a chunk of examples are matrix products (A += a^T a, B += g^T g, diag += (a^2)^T (sum_k g^2)).
The input sum sum_n a_n a_n^T = N A (`input_moment`) is also, doubled, the Hessian 2 X^T X of a layer's squared
output error on inputs X that GPTQ and SparseGPT compress against (`sandbox.compress.model.calibrate`, `.obs`):
one function computes both.
Leaves that are not part of a dense {"w", "b"} pair get their GGN diagonal from K vjps over those leaves only.
A dense layer without a bias is not supported by kron: a's scale is then not identifiable from derivatives
of the outputs (a -> c a, g -> g / c leaves every weight derivative unchanged but moves A and B).
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.bayes import likelihood as lik_lib
from sandbox.errors import SandboxError


def input_moment(a_NxD, mask_N=None):
    """sum_n m_n a_n a_n^T (m = 1 without a mask): N times KFAC's input factor A, half the layer Hessian 2 X^T X.
    Array-library agnostic: numpy float64 rows stay numpy (calibration), jax arrays stay jax (traced fits)."""
    weighted = a_NxD if mask_N is None else a_NxD * mask_N[:, None]
    return weighted.T @ a_NxD


def split_layers(paths: tuple, shapes: tuple) -> tuple:
    """([(w_index, b_index)] for the leaves pairing up as {"w": Din x Dout, "b": Dout}, [other leaf indices])."""
    by_parent = {}
    for i, path in enumerate(paths):
        parent, _, name = path.rpartition("/")
        by_parent.setdefault(parent, {})[name] = i
    layers, others = [], []
    for leaves in by_parent.values():
        w, b = leaves.get("w"), leaves.get("b")
        if w is not None and b is not None and len(shapes[w]) == 2 and shapes[b] == shapes[w][1:]:
            layers.append((w, b))
            others += [i for name, i in leaves.items() if name not in ("w", "b")]
        else:
            others += list(leaves.values())
    return layers, sorted(others)


def dense_layers(paths: tuple, shapes: tuple) -> list:
    """The (w, b) pairs of the subset, which must be all of it (structure='kron')."""
    layers, others = split_layers(paths, shapes)
    if others:
        raise SandboxError(f"structure='kron' needs dense layers {{'w': Din x Dout, 'b': Dout}} (with a bias); "
                           f"{', '.join(paths[i] for i in others)} (shapes {[shapes[i] for i in others]}) are not; "
                           "use structure='diag', 'full' or 'lowrank'")
    return layers


def offsets_of(shapes) -> list:
    return [int(x) for x in np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in shapes])])]


def _replaced(leaves, idx, new):
    out = list(leaves)
    for i, leaf in zip(idx, new):
        out[i] = leaf
    return out


def _pull(f, leaves, idx, xn):
    """jax.vjp of x -> f over the leaves `idx` only (the others constant: no cotangent is built for them)."""
    return jax.vjp(lambda new: f(_replaced(leaves, idx, new), xn[None])[0], [leaves[i] for i in idx])


def layer_reads(f, leaves, xn, layers, cot_KxC):
    """Per dense layer of one example: its input a (Din) and the rows g_k = J_s^T cot_k (K x Dout)."""
    bias_idx = [b for _, b in layers]
    g = jax.vmap(_pull(f, leaves, bias_idx, xn)[1])(cot_KxC)[0]
    _, vjp = _pull(f, leaves, [i for pair in layers for i in pair], xn)
    grads = vjp(jax.random.normal(jax.random.key(0), cot_KxC.shape[1:], cot_KxC.dtype))[0]
    a = []
    for dw, db in zip(grads[0::2], grads[1::2]):  # dW = a d^T, db = d
        norm = jnp.sum(db ** 2)
        a.append(jnp.where(norm > 0, dw @ db / jnp.where(norm > 0, norm, 1.0), 0.0))
    return a, g


def chunk_sums(f, leaves, xc, yc, mc, layers, others, lik, curvature, sigma_noise, structure):
    """Curvature sums over one chunk: per layer (A_sum, B) (kron) or (diag W, diag b) (diag), and per
    other leaf its GGN diagonal. f(leaves, x_1xD) -> z_1xC with `leaves` the subset's leaves; mc masks padding."""
    def one(xn, yn):
        z_C = f(leaves, xn[None])[0]
        s_KxC = lik_lib.sqrt_factor(lik, z_C, yn, sigma_noise, curvature).T
        a, g = layer_reads(f, leaves, xn, layers, s_KxC) if layers else ([], [])
        rest = [jnp.sum(r ** 2, 0) for r in jax.vmap(_pull(f, leaves, others, xn)[1])(s_KxC)[0]] if others else []
        return a, g, rest

    a, g, rest = jax.vmap(one)(xc, yc)
    rest = [jnp.tensordot(mc, r, axes=1) for r in rest]
    if structure == "kron":
        return [(input_moment(ai, mc), jnp.einsum("m,mko,mkp->op", mc, gi, gi))
                for ai, gi in zip(a, g)], rest
    g2 = [jnp.sum(gi ** 2, 1) for gi in g]
    return [(jnp.einsum("m,mi,mo->io", mc, ai ** 2, gi), mc @ gi) for ai, gi in zip(a, g2)], rest


def softmax_head_factors(phi_NxD, probs_NxC):
    """KFAC of a linear softmax head z = phi W (exact J_s = I): A = phi^T phi / N, B = sum_n Lambda_n."""
    n = phi_NxD.shape[0]
    return input_moment(phi_NxD) / n, jnp.diag(jnp.sum(probs_NxC, 0)) - probs_NxC.T @ probs_NxC
