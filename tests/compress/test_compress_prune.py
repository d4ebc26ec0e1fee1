"""Magnitude and N:M pruning keep exactly the right entries."""

import jax
import numpy as np
import pytest

from sandbox.compress import prune
from sandbox.errors import SandboxError

W = jax.random.normal(jax.random.PRNGKey(3), (16, 6))


def test_magnitude_prune_drops_the_smallest_entries():
    out = prune.magnitude_prune(W, 0.25)
    a = np.abs(np.asarray(W)).ravel()
    kept = np.asarray(out["mask"]).ravel()
    assert kept.sum() == 72 and out["kept_fraction"] == 0.75
    assert a[kept].min() > a[~kept].max()
    np.testing.assert_array_equal(np.asarray(out["w"]).ravel()[kept], np.asarray(W).ravel()[kept])


def test_two_four_keeps_the_two_largest_per_block():
    out = prune.nm_prune(W, 2, 4)
    w, mask = np.asarray(W), np.asarray(out["mask"])
    for b in range(4):
        for c in range(6):
            block = np.abs(w[4 * b : 4 * b + 4, c])
            assert set(np.flatnonzero(mask[4 * b : 4 * b + 4, c])) == set(np.argsort(-block)[:2])
    assert mask.sum() == W.size // 2


def test_bad_pruning_settings_are_clear_errors():
    with pytest.raises(SandboxError, match="sparsity"):
        prune.magnitude_prune(W, 1.0)
    with pytest.raises(SandboxError, match="does not divide the input dimension 16"):
        prune.nm_prune(W, 2, 5)
    with pytest.raises(SandboxError, match="0 < N < M"):
        prune.nm_prune(W, 4, 4)
