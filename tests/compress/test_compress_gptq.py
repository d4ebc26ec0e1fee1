"""GPTQ and SparseGPT against a plain sequential OBS in float64, against RTN and magnitude pruning on the
layer objective, and their Hessian 2 X^T X against the KFAC input factor of sandbox.bayes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import bayes
from sandbox.compress import gptq, obs, quantize
from sandbox.compress import model as cmodel
from sandbox.compress import prune as pruning
from sandbox.nn import plain_mlp


def correlated_layer(seed, n=24, m=10, t=60):
    """W (n x m) and H = 2 X^T X with correlated inputs X = Z M (T x n), in float64."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(t, n)) @ rng.normal(size=(n, n))
    return rng.normal(size=(n, m)), 2 * x.T @ x


def sequential_obs(w, h, damp, order, pick):
    """OBS written plainly: fix rows in `order`, re-inverting the Hessian of the rows left after each one.
    pick(i, rows_left) -> row i's fixed value, from the current weights of the rows left (row i first)."""
    w, h = np.array(w, float), np.array(h, float)
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    w, h = w[order], h[np.ix_(order, order)]
    out = np.zeros_like(w)
    for i in range(len(w)):
        out[i] = pick(i, w[i:])
        h_inv = np.linalg.inv(h[i:, i:])
        w[i:] -= np.outer(h_inv[:, 0] / h_inv[0, 0], w[i] - out[i])
    return out[np.argsort(order)]


def reference_gptq(w, h, bits, granularity, group, symmetric, act_order, damp=0.01):
    order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(len(w))
    fixed = quantize.grid(w, bits, symmetric, None if granularity == "tensor" else 0)
    grids = {}

    def pick(i, rows_left):
        if granularity == "group" and i % group == 0:
            grids["now"] = quantize.grid(rows_left[:group], bits, symmetric, 0)
        step, zero, lo, hi = grids["now"] if granularity == "group" else fixed
        return quantize.to_grid(rows_left[0], step.ravel(), zero.ravel(), lo, hi)[1]

    return sequential_obs(w, h, damp, order, pick)


@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("symmetric", [True, False])
def test_gptq_is_sequential_obs_whatever_the_block_size(granularity, act_order, symmetric):
    """The Cholesky rows and lazy block updates change nothing: the same rounding decisions, the same weights."""
    w, h = correlated_layer(0)
    expected = reference_gptq(w, h, 4, granularity, 6, symmetric, act_order)
    for block_size in (1, 5, 128):  # blocks cutting groups of 6, and one block for all 24 rows
        w_hat, info = gptq.quantize(w, h, 4, 6 if granularity == "group" else None, block_size=block_size,
                                    act_order=act_order, symmetric=symmetric, granularity=granularity)
        np.testing.assert_allclose(w_hat, expected, rtol=0, atol=1e-10)
        scale, zero = info["scale"], info["zero"]
        if granularity == "group":  # one grid per 6 rows of the order the rows were fixed in
            scale, zero = (np.repeat(g, 6, axis=0)[np.argsort(info["perm"])] for g in (scale, zero))
        np.testing.assert_array_equal((info["q"] - zero) * scale, w_hat)  # the integers are the decisions
        assert info["objective"] == pytest.approx(obs.objective(w, w_hat, h), rel=1e-12)


@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_gptq_with_uncorrelated_inputs_is_rtn(granularity):
    """A diagonal H couples no rows: nothing moves, and GPTQ makes RTN's decisions (act_order only reorders)."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(32, 8)).astype(np.float32).astype(np.float64)
    h = np.diag(rng.uniform(0.5, 2.0, 32))
    rtn = quantize.quantize(w, 4, True, granularity, group_size=8)
    for act_order in (False, True) if granularity != "group" else (False,):  # reordered groups are other groups
        w_hat, info = gptq.quantize(w, h, 4, 8 if granularity == "group" else None, act_order=act_order,
                                    granularity=granularity)
        np.testing.assert_array_equal(info["q"], rtn["q"])
        np.testing.assert_allclose(w_hat, rtn["w"], rtol=1e-6)
        assert info["bits_per_weight"] == pytest.approx(rtn["bits_per_weight"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([8, 16, 32]), m=st.sampled_from([32, 64]),
       bits=st.sampled_from([4, 8]), granularity=st.sampled_from(["tensor", "channel", "group"]),
       act_order=st.booleans(), samples_per_input=st.integers(2, 4))
def test_gptq_objective_is_at_most_rtns(seed, n, m, bits, granularity, act_order, samples_per_input):
    """tr((W - W')^T H (W - W')) of GPTQ <= RTN's on correlated inputs (X = Z M) with >= 32 output channels.

    Not a theorem for one matrix: with uniform independent rounding residuals, RTN's objective per column is
    step^2/12 tr H and GPTQ's step^2/12 sum_i 1/[H_F^{-1}]_ii, each term <= H_ii. Where H is near diagonal
    the two expectations meet and a single case goes either way (found with 1 to 16 columns); the domain here
    is the one the method is for: correlated inputs, where the expected gap is wide (worst ratio 0.90 in
    1,500 random cases of this domain), summed over many columns.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples_per_input * n, n)) @ rng.normal(size=(n, n))
    h, w = 2 * x.T @ x, rng.normal(size=(n, m))
    _, info = gptq.quantize(w, h, bits, 4 if granularity == "group" else None, act_order=act_order,
                            granularity=granularity)
    rtn = quantize.quantize(w, bits, True, granularity, group_size=4)["w"]
    assert info["objective"] <= obs.objective(w, np.asarray(rtn, np.float64), h)


def reference_sparsegpt(w, h, sparsity, n_m, block, damp=0.01):
    """SparseGPT's masks, chosen from the current weights of the rows left, by the saliency w^2 / [H_F^{-1}]_ii."""
    left = np.array(h, float)
    left[np.diag_indices_from(left)] += damp * np.mean(np.diag(left))
    d = np.array([1 / np.linalg.inv(left[i:, i:])[0, 0] for i in range(len(w))])  # 1 / [H_F^{-1}]_ii
    mask = np.ones_like(w, bool)

    def pick(i, rows_left):
        if n_m and i % n_m[1] == 0:
            sal = rows_left[:n_m[1]] ** 2 * d[i:i + n_m[1], None]
            mask[i:i + n_m[1]] = np.argsort(np.argsort(-sal, 0, kind="stable"), 0, kind="stable") < n_m[0]
        elif not n_m and i % block == 0:
            sal = rows_left[:block] ** 2 * d[i:i + block, None]
            drop = int(round(sparsity * sal.size))
            rank = np.argsort(np.argsort(-sal.ravel(), kind="stable"), kind="stable").reshape(sal.shape)
            mask[i:i + block] = rank < sal.size - drop
        return np.where(mask[i], rows_left[0], 0.0)

    return sequential_obs(w, h, damp, np.arange(len(w)), pick), mask


@pytest.mark.parametrize("sparsity, n_m", [(0.5, None), (0.75, None), (None, (2, 4)), (None, (1, 3))])
def test_sparsegpt_is_sequential_obs_with_adaptive_masks(sparsity, n_m):
    w, h = correlated_layer(2)
    expected, mask = reference_sparsegpt(w, h, sparsity, n_m, block=8)
    w_hat, info = gptq.prune(w, h, sparsity=sparsity, n_m=n_m, block_size=8)
    np.testing.assert_array_equal(info["mask"], mask)
    np.testing.assert_allclose(w_hat, expected, rtol=0, atol=1e-10)
    assert np.all(w_hat[~mask] == 0)
    if n_m:  # every run of M input rows keeps exactly N weights per column
        assert np.all(mask.reshape(-1, n_m[1], w.shape[1]).sum(1) == n_m[0])
    else:  # every block of 8 rows loses its share
        assert np.all(mask.reshape(3, -1).sum(1) == 8 * 10 - round(sparsity * 80))


@pytest.mark.parametrize("seed", range(4))
def test_sparsegpt_loses_less_than_magnitude_pruning(seed):
    w, h = correlated_layer(seed, n=32, m=32, t=96)
    for sparsity in (0.3, 0.6):
        ours = gptq.prune(w, h, sparsity=sparsity)[1]["objective"]
        assert ours < obs.objective(w, np.asarray(pruning.magnitude_prune(w, sparsity)["w"], np.float64), h)
    nm = gptq.prune(w, h, n_m=(2, 4))[1]["objective"]
    assert nm < obs.objective(w, np.asarray(pruning.nm_prune(w, 2, 4)["w"], np.float64), h)


def test_layer_hessian_is_2n_times_the_kfac_input_factor():
    """The Hessian GPTQ compresses against (calibration, compress.model) and the input factor A of the
    Laplace posterior's KFAC (sandbox.bayes) come from the same rows through one function."""
    with jax.enable_x64(True):
        params = plain_mlp.init(jax.random.key(0), [3, 5, 4], jnp.float64)
        x = jax.random.normal(jax.random.key(1), (40, 3), jnp.float64)
        y = jax.random.randint(jax.random.key(2), (40,), 0, 4)
        post = bayes.laplace(plain_mlp.apply, params, (x, y), structure="kron")
        stats = cmodel.calibrate(plain_mlp.apply, params, [x])
    a_blocks = [b for b in post.curv.blocks if b.la_A.size > 1]  # the weights' blocks (a bias block has A = [1])
    for path, blk in zip(("layer_0", "layer_1"), a_blocks):
        qa, la = np.asarray(blk.qa_AxA), np.asarray(blk.la_A)
        a = (qa * la) @ qa.T  # A = Qa La Qa^T, as the posterior stores it
        np.testing.assert_allclose(obs.layer_hessian(stats[path]["gram"]), 2 * 40 * a, rtol=1e-10, atol=1e-12)
