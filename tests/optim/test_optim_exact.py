"""Each sandbox optimizer, written from its equations, equals its optax counterpart in float64:
its `scale_by_<name>` against optax's `scale_by_*`, and the whole chain against optax's alias."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import optim

STEPS = 100
SHAPES = {"wide": (3, 5), "tall": (6, 2), "bias": (4,), "conv": (2, 3, 2)}
MATRICES = {"wide": (3, 5), "tall": (6, 2)}
DECAY_TREE = {"wide": True, "tall": False, "bias": True, "conv": False}
MATRIX_DIMS = {k: optax.contrib.MuonDimensionNumbers() for k in MATRICES}  # every leaf x W, W = M x N
decay_fn = lambda p: jax.tree.map(lambda x: x.shape[0] == 3 or x.ndim == 1, p)  # noqa: E731  (= DECAY_TREE)


def _trajectory(tx, seed=0, shapes=SHAPES):
    """Parameters after each of STEPS updates on a random quadratic with gradient noise."""
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    target = {k: jnp.asarray(rng.standard_normal(s)) for k, s in shapes.items()}
    noise = {k: jnp.asarray(rng.standard_normal((STEPS, *s))) for k, s in shapes.items()}

    def step(carry, noise):
        params, state = carry
        grads = jax.tree.map(lambda p, t, n: 2.0 * (p - t) + 0.3 * n, params, target, noise)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (params, tx.init(params)), noise)
    return path


def _descend(direction, lr=0.01):
    """A `scale_by_*` direction followed by optax's fixed step -lr (the same on both sides)."""
    return optax.chain(direction, optax.scale(-lr))


# The mathematics alone: each scale_by_<name> against optax's own transform.
SCALE_BY = [
    ("momentum", optim.scale_by_momentum(0.8), optax.trace(0.8)),
    ("nesterov", optim.scale_by_momentum(0.9, nesterov=True), optax.trace(0.9, nesterov=True)),
    ("adam", optim.scale_by_adam(0.8, 0.95, 1e-6), optax.scale_by_adam(0.8, 0.95, 1e-6)),
    ("adam_eps_root", optim.scale_by_adam(eps_root=1e-4), optax.scale_by_adam(eps_root=1e-4)),
    ("nadam", optim.scale_by_adam(nesterov=True), optax.scale_by_adam(nesterov=True)),
    ("lion", optim.scale_by_lion(0.8, 0.97), optax.scale_by_lion(0.8, 0.97)),
    ("muon", optim.scale_by_muon(beta=0.9, ns_steps=4),
     optax.contrib.scale_by_muon(beta=0.9, ns_steps=4, weight_dimension_numbers=MATRIX_DIMS)),
]

# The whole optimizers: the sandbox's chains against optax's aliases.
CASES = [
    ("sgd", optim.sgd(0.05), optax.sgd(0.05)),
    ("momentum", optim.momentum(0.02, beta=0.8), optax.sgd(0.02, momentum=0.8)),
    ("nesterov", optim.nesterov(0.02, beta=0.9), optax.sgd(0.02, momentum=0.9, nesterov=True)),
    ("adam", optim.adam(0.01, b1=0.8, b2=0.95, eps=1e-6), optax.adam(0.01, b1=0.8, b2=0.95, eps=1e-6)),
    ("nadam", optim.adam(0.01, nesterov=True), optax.adam(0.01, nesterov=True)),
    ("adamw", optim.adamw(0.01, weight_decay=0.3), optax.adamw(0.01, weight_decay=0.3)),
    ("adamw_mask", optim.adamw(0.01, weight_decay=0.3, mask=decay_fn),
     optax.adamw(0.01, weight_decay=0.3, mask=decay_fn)),
    ("adamw_mask_tree", optim.adamw(0.01, weight_decay=0.3, mask=DECAY_TREE),
     optax.adamw(0.01, weight_decay=0.3, mask=DECAY_TREE)),
    ("lion", optim.lion(0.003, b1=0.8, b2=0.97, weight_decay=0.5),
     optax.lion(0.003, b1=0.8, b2=0.97, weight_decay=0.5)),
    ("lion_mask_tree", optim.lion(0.003, weight_decay=0.5, mask=DECAY_TREE),
     optax.lion(0.003, weight_decay=0.5, mask=DECAY_TREE)),
    ("muon", optim.muon(0.02), optax.contrib.muon(0.02)),
    (
        "muon_options",
        optim.muon(0.02, beta=0.9, weight_decay=0.1, nesterov=False, adam_b1=0.8, adam_weight_decay=0.2,
                   adam_learning_rate=0.005, ns_steps=4),
        optax.contrib.muon(0.02, beta=0.9, weight_decay=0.1, nesterov=False, adam_b1=0.8,
                           adam_weight_decay=0.2, adam_learning_rate=0.005, ns_steps=4),
    ),
    ("muon_mask", optim.muon(0.02, weight_decay=0.1, mask=decay_fn),
     optax.contrib.muon(0.02, weight_decay=0.1, weight_decay_mask=decay_fn)),
    ("muon_mask_tree", optim.muon(0.02, weight_decay=0.1, mask=DECAY_TREE),
     optax.contrib.muon(0.02, weight_decay=0.1, weight_decay_mask=decay_fn)),
]


def _assert_same_paths(name, ours_path, theirs_path):
    for key in ours_path:
        a, b = np.asarray(ours_path[key]), np.asarray(theirs_path[key])
        assert a.dtype == np.float64
        rel = np.max(np.abs(a - b)) / np.max(np.abs(b))
        assert rel < 1e-10, f"{name}/{key}: relative difference {rel:.2e}"
        # The trajectory really moved: the test could have failed.
        assert np.max(np.abs(a[-1] - a[0])) > 1e-3


@pytest.mark.parametrize("name,ours,theirs", SCALE_BY, ids=[c[0] for c in SCALE_BY])
def test_scale_by_matches_optax_for_100_steps_in_float64(name, ours, theirs):
    shapes = MATRICES if name.startswith("muon") else SHAPES  # Muon's direction is for matrices
    with jax.enable_x64(True):
        _assert_same_paths(name, _trajectory(_descend(ours), shapes=shapes),
                           _trajectory(_descend(theirs), shapes=shapes))


@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_matches_optax_for_100_steps_in_float64(name, ours, theirs):
    with jax.enable_x64(True):
        _assert_same_paths(name, _trajectory(ours), _trajectory(theirs))


def test_muon_mask_decays_the_adamw_group_too():
    """optax's mask covers only Muon's matrices; the sandbox's also says which AdamW leaves decay."""
    with jax.enable_x64(True):
        ours = _trajectory(optim.muon(0.02, adam_weight_decay=0.5, mask=DECAY_TREE))
        decayed = _trajectory(optax.contrib.muon(0.02, adam_weight_decay=0.5))
        kept = _trajectory(optax.contrib.muon(0.02))
        np.testing.assert_allclose(ours["bias"], decayed["bias"], rtol=1e-10)  # 1-D, mask True
        np.testing.assert_allclose(ours["conv"], kept["conv"], rtol=1e-10)  # 3-D, mask False
        assert np.max(np.abs(decayed["conv"] - kept["conv"])) > 1e-3


def test_muon_without_bias_correction_is_the_reference_lerp_form():
    """bias_correction=False: m_hat = beta m + (1 - beta) g (Keller Jordan's form), not optax's."""
    with jax.enable_x64(True):
        g, g2 = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 5)))
        p = {"w": jnp.zeros((3, 5))}
        updates = {}
        for corrected in (False, True):
            tx = optim.muon(1.0, beta=0.9, bias_correction=corrected)
            _, state = tx.update({"w": g}, tx.init(p), p)
            updates[corrected], _ = tx.update({"w": g2}, state, p)
        m2 = 0.9 * (0.1 * g) + 0.1 * g2  # the momentum after two steps
        expected = -np.sqrt(5 / 3) * optim.orthogonalize(0.9 * m2 + 0.1 * g2)
        np.testing.assert_allclose(updates[False]["w"], expected, rtol=1e-10, atol=1e-12)
        assert np.max(np.abs(updates[True]["w"] - expected)) > 1e-3


@settings(max_examples=10, deadline=None)
@given(rows=st.sampled_from([2, 5, 9]), cols=st.sampled_from([2, 5, 9]), seed=st.integers(0, 2**16))
def test_newton_schulz_pushes_singular_values_towards_one(rows, cols, seed):
    """NS5 keeps the singular vectors of G and maps its singular values into ~[0.6, 1.25]."""
    with jax.enable_x64(True):
        g = np.random.default_rng(seed).standard_normal((rows, cols))
        o = np.asarray(_orthogonalize(g))
        u, s, vt = np.linalg.svd(g, full_matrices=False)
        s_o = np.linalg.svd(o, compute_uv=False)
        assert o.shape == (rows, cols)
        assert np.all((s_o > 0.3) & (s_o < 1.25)), s_o  # tiny singular values converge slower
        # Same singular vectors: U^T O V is diagonal.
        core = u.T @ o @ vt.T
        np.testing.assert_allclose(core - np.diag(np.diag(core)), 0, atol=1e-8)


_orthogonalize = jax.jit(optim.orthogonalize)


def test_muon_adam_paths_send_named_matrices_to_adamw():
    """A matrix whose path matches `adam_paths` takes exactly AdamW's step; the others Muon's."""
    with jax.enable_x64(True):
        ours = _trajectory(optim.muon(0.02, adam_paths=("wide",)))
        muon_all = _trajectory(optax.contrib.muon(0.02))
        adam = _trajectory(optax.adamw(0.02, eps=1e-8, weight_decay=0.0, nesterov=True))
        np.testing.assert_allclose(ours["wide"], adam["wide"], rtol=1e-10)
        np.testing.assert_allclose(ours["tall"], muon_all["tall"], rtol=1e-10)
        assert np.max(np.abs(adam["wide"] - muon_all["wide"])) > 1e-3
