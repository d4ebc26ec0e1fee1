"""Tests for sandbox.nn: config, dense, embeddings, norms, attention, the transformer."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import paths
import pytest
import scipy.stats
import yaml

from sandbox import nn
from sandbox.errors import SandboxError

CONFIGS = paths.ROOT / "configs" / "model"
RNG = np.random.default_rng(0)
SMALL = dict(vocab_size=13, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=24)


def naive_attention(q, k, v, mask):
    """Loop over batch, head and query: softmax of one score row at a time."""
    b, h, l, kw = q.shape
    out = np.zeros(q.shape[:-1] + (v.shape[-1],))
    allowed_all = np.ones((b, h, l, k.shape[2]), bool) if mask is None else np.broadcast_to(mask, (b, h, l, k.shape[2]))
    for bi in range(b):
        for hi in range(h):
            for t in range(l):
                s = np.array([q[bi, hi, t] @ k[bi, hi, j] / math.sqrt(kw) for j in range(k.shape[2])])
                allowed = allowed_all[bi, hi, t]
                w = np.where(allowed, np.exp(s - s[allowed].max()), 0.0)
                out[bi, hi, t] = (w / w.sum()) @ v[bi, hi]
    return out


# --- config ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(d_model=30, n_heads=4), "d_model"),
        (dict(pos_encoding="alibi"), "pos_encoding"),
        (dict(norm="batchnorm"), "norm"),
        (dict(mlp="relu"), "mlp"),
        (dict(n_layers=0), "n_layers"),
        (dict(d_model=12, n_heads=4, pos_encoding="rope"), "rope"),
        (dict(init_std=-1.0), "init_std"),
        (dict(n_heads=4, n_kv_heads=3), "n_kv_heads"),
        (dict(n_kv_heads=0), "n_kv_heads"),
        (dict(rope_base=0.0), "rope_base"),
        (dict(norm_eps=-1e-6), "norm_eps"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(SandboxError, match=field):
        nn.ModelConfig(**kwargs)


def test_config_error_lists_choices_and_config_is_hashable():
    with pytest.raises(SandboxError, match="learned, sinusoidal, rope"):
        nn.ModelConfig(pos_encoding="alibi")
    assert hash(nn.ModelConfig()) == hash(nn.ModelConfig())


@pytest.mark.parametrize("name, expected", [("tiny", (64, 64, 2, 256)), ("small", (128, 128, 4, 512))])
def test_model_yaml_files_are_valid_configs(name, expected):
    cfg = nn.ModelConfig(**yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    assert (cfg.seq_len, cfg.d_model, cfg.n_layers, cfg.d_ff) == expected
    assert cfg.vocab_size == 256 and cfg.n_heads == 4
    assert (cfg.kv_heads, cfg.rope_base, cfg.norm_eps) == (4, 10000.0, 1e-5)  # the defaults: as before the options


def test_smollm2_preset_has_134_5m_parameters():
    """SmolLM2-135M: tied V D + 30 blocks of (q, o: D^2; k, v: D x 3*64; SwiGLU: 3 D F; two RMSNorms) + final norm."""
    cfg = nn.ModelConfig(**yaml.safe_load((CONFIGS / "smollm2_135m.yaml").read_text()))
    v, d, f, kv = 49152, 576, 1536, 3 * 64
    assert cfg.kv_heads == 3 and cfg.head_dim == 64
    assert nn.num_params(cfg) == v * d + 30 * (2 * d * d + 2 * d * kv + 3 * d * f + 2 * d) + d == 134_515_008


# --- dense, norms, embeddings -----------------------------------------------------


def test_factorized_dense_equals_dense_with_w_equal_uv():
    u, v, b, x = (RNG.standard_normal(shape, np.float32) for shape in [(7, 3), (3, 5), (5,), (4, 7)])
    chex.assert_trees_all_close(nn.dense({"u": u, "v": v, "b": b}, x), nn.dense({"w": u @ v, "b": b}, x), atol=1e-5)
    chex.assert_trees_all_close(nn.dense({"w": u @ v}, x), x @ (u @ v))


@pytest.mark.parametrize("lead", [(), (5,), (2, 3, 4)])
def test_flattened_matmul_and_its_gradients_equal_the_batched_product(lead):
    """nn.linear.matmul flattens the leading axes for the backward pass's sake: its value and the gradients
    for x and W (through a nonlinear loss) equal those of the plain batched product, in float64."""
    with jax.enable_x64(True):
        x, w = RNG.standard_normal(lead + (7,)), RNG.standard_normal((7, 5))

        def loss(product):
            return lambda x, w: jnp.sum(jnp.sin(product(x, w)) ** 2)

        flat = jax.value_and_grad(loss(nn.linear.matmul), argnums=(0, 1))(x, w)
        plain = jax.value_and_grad(loss(lambda x, w: jnp.einsum("...i,ij->...j", x, w)), argnums=(0, 1))(x, w)
        assert flat[1][0].dtype == jnp.float64 and flat[1][0].shape == x.shape
        chex.assert_trees_all_close(flat, plain, rtol=1e-13, atol=1e-13)


def test_layer_norm_and_rms_norm_statistics():
    x = jnp.asarray(3.0 + 5.0 * RNG.standard_normal((6, 32), np.float32))
    y = nn.layer_norm(nn.init_layer_norm(32), x, eps=0.0)
    chex.assert_trees_all_close(y.mean(-1), jnp.zeros(6), atol=1e-5)
    chex.assert_trees_all_close(y.var(-1), jnp.ones(6), atol=1e-4)
    scale, bias = jnp.arange(32.0), jnp.full(32, 2.0)
    chex.assert_trees_all_close(nn.layer_norm({"scale": scale, "bias": bias}, x, eps=0.0), y * scale + bias, atol=1e-4)
    r = nn.rms_norm(nn.init_rms_norm(32), x, eps=0.0)
    chex.assert_trees_all_close(jnp.mean(r**2, -1), jnp.ones(6), atol=1e-5)
    assert float(jnp.abs(r.mean(-1)).min()) > 0.1  # RMSNorm does not center


def test_sinusoidal_positions_match_the_formula():
    pe = np.asarray(nn.sinusoidal_positions(5, 6))
    for t in range(5):
        for i in range(3):
            np.testing.assert_allclose(pe[t, 2 * i], math.sin(t / 10000 ** (2 * i / 6)), atol=1e-6)
            np.testing.assert_allclose(pe[t, 2 * i + 1], math.cos(t / 10000 ** (2 * i / 6)), atol=1e-6)


def test_rope_scores_depend_only_on_relative_position():
    q, k = (jnp.asarray(RNG.standard_normal((1, 1, 1, 8), np.float32)) for _ in range(2))

    def score(i, j):
        return float(jnp.sum(nn.rope(q, jnp.array([i])) * nn.rope(k, jnp.array([j]))))

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    assert score(3, 1) == pytest.approx(score(2, 0), abs=1e-4)
    assert abs(score(3, 1) - score(3, 2)) > 1e-3  # but does depend on the offset


def test_rope_attention_is_shift_invariant():
    d, h = 16, 2
    p = {name: {"w": 0.5 * RNG.standard_normal((d, d), np.float32)} for name in "qkvo"}
    x = RNG.standard_normal((2, 6, d), np.float32)
    mha = jax.jit(lambda positions: nn.multi_head_attention(p, x, h, nn.causal_mask(6), True, positions))
    out = mha(jnp.arange(6))
    chex.assert_trees_all_close(out, mha(jnp.arange(6) + 37), atol=1e-4)
    reversed_pos = mha(jnp.arange(6)[::-1])
    assert float(jnp.abs(out - reversed_pos).max()) > 1e-3


# --- attention ------------------------------------------------------------------


def test_grouped_query_attention_equals_multi_head_with_repeated_kv_heads():
    """GQA with G = 2 key/value heads for H = 6 query heads is exactly MHA whose k, v weights repeat
    each key/value head's columns for its H/G = 3 query heads (head h reads head h // 3), in float64."""
    with jax.enable_x64(True):
        d, h, g, width = 24, 6, 2, 4
        p = {name: {"w": jnp.asarray(RNG.standard_normal((d, d if name in "qo" else g * width)))} for name in "qkvo"}
        repeat = lambda w: jnp.repeat(w.reshape(d, g, width), h // g, axis=1).reshape(d, d)  # noqa: E731
        mha = {**p, "k": {"w": repeat(p["k"]["w"])}, "v": {"w": repeat(p["v"]["w"])}}
        x = jnp.asarray(RNG.standard_normal((2, 5, d)))
        for rope in (False, True):
            gqa_out = nn.multi_head_attention(p, x, h, nn.causal_mask(5), rope, None, g, 500.0)
            mha_out = nn.multi_head_attention(mha, x, h, nn.causal_mask(5), rope, None, None, 500.0)
            assert gqa_out.dtype == jnp.float64
            np.testing.assert_allclose(gqa_out, mha_out, rtol=1e-13, atol=1e-13)
        # and the grouping is not trivially ignored: other k columns change the output
        other = {**p, "k": {"w": p["k"]["w"][:, ::-1]}}
        assert float(jnp.abs(nn.multi_head_attention(other, x, h, None, n_kv_heads=g) - gqa_out).max()) > 1e-3


def test_rope_base_sets_the_rotation_frequencies():
    """Channel pair (i, i + K/2) turns by t * base^(-2i/K): at t = 1 the last pair turns by base^(-(K-2)/K)."""
    x = jnp.zeros((1, 1, 1, 8)).at[..., 3].set(1.0)  # the last pair's first channel, i = 3
    for base in (10000.0, 100000.0):
        angle = base ** (-6 / 8)
        np.testing.assert_allclose(nn.rope(x, jnp.array([1]), base)[0, 0, 0, [3, 7]],
                                   [math.cos(angle), math.sin(angle)], rtol=1e-6)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding"])
def test_attention_matches_naive_loop(mask_kind):
    with jax.enable_x64(True):
        q, k, v = (jnp.asarray(RNG.standard_normal(shape)) for shape in [(2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6)])
        mask = {
            "none": None,
            "causal": jnp.tril(jnp.ones((5, 7), bool)),
            "padding": jnp.array([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :],
        }[mask_kind]
        out = nn.scaled_dot_product_attention(q, k, v, mask)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(out, naive_attention(*map(np.asarray, (q, k, v)), mask), rtol=1e-12, atol=1e-12)


def test_fully_masked_row_is_finite():
    q = jnp.ones((1, 1, 2, 4))
    mask = jnp.array([[False, False], [True, False]])
    out = nn.scaled_dot_product_attention(q, q, jnp.arange(8.0).reshape(1, 1, 2, 4), mask)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_gelu_exact_is_x_times_normal_cdf():
    x = jnp.linspace(-4.0, 4.0, 33)
    np.testing.assert_allclose(nn.gelu(x, approximate=False), x * scipy.stats.norm.cdf(x), atol=1e-6)
    assert float(jnp.abs(nn.gelu(x, approximate=False) - nn.gelu(x, approximate=True)).max()) > 1e-5


# --- transformer ----------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        dict(pos_encoding="learned"),
        dict(pos_encoding="sinusoidal", norm="rmsnorm"),
        dict(pos_encoding="rope", mlp="swiglu", tie_embeddings=False),
        dict(pos_encoding="rope", rope_base=1e5, norm="rmsnorm", norm_eps=1e-6, mlp="swiglu", n_kv_heads=1),
    ],
)
def test_causality_through_gradients(extra):
    cfg = nn.ModelConfig(**SMALL, **extra)
    params = nn.init(jax.random.key(6), cfg)
    x = jax.jit(nn.embed, static_argnums=2)(params, jnp.asarray(RNG.integers(0, 13, (1, 8))), cfg)
    t = 3

    def out_at_t(x):
        return jnp.sum(nn.forward_from_embeddings(params, x, cfg)[:, t] ** 2)

    g = jax.jit(jax.grad(out_at_t))(x)[0]
    assert float(jnp.abs(g[t + 1 :]).max()) == 0.0  # the future is invisible, exactly
    assert float(jnp.abs(g[: t + 1]).sum(-1).min()) > 0.0  # every past position matters


def test_param_tree_layout_and_count_match_hand_formula():
    cfg = nn.ModelConfig(**yaml.safe_load((CONFIGS / "tiny.yaml").read_text()))
    params = jax.eval_shape(lambda key: nn.init(key, cfg), jax.random.key(0))
    v, l, d, f, n = 256, 64, 64, 256, 2
    per_block = 2 * (2 * d) + 4 * d * d + 2 * d * f  # two layernorms, q k v o, up down
    expected = v * d + l * d + n * per_block + 2 * d  # tied: no unembed
    assert sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(params)) == expected == nn.num_params(cfg)
    assert set(params) == {"embed", "block_0", "block_1", "norm_final"}
    assert params["block_1"]["attn"]["o"]["w"].shape == (d, d)
    assert params["block_0"]["mlp"]["up"]["w"].shape == (d, f)

    untied = nn.ModelConfig(**SMALL, pos_encoding="rope", norm="rmsnorm", mlp="swiglu", tie_embeddings=False)
    v, d, f, n = 13, 16, 24, 2
    assert nn.num_params(untied) == v * d + n * (2 * d + 4 * d * d + 3 * d * f) + d + d * v
    assert set(nn.param_spec(untied)["block_0"]["mlp"]) == {"up", "gate", "down"}


def test_residual_projections_get_scaled_init():
    cfg = nn.ModelConfig(vocab_size=8, seq_len=8, d_model=64, n_layers=2, d_ff=64, init_std=0.02)
    block = nn.init(jax.random.key(8), cfg)["block_1"]
    assert float(block["attn"]["q"]["w"].std()) == pytest.approx(0.02, rel=0.05)
    assert float(block["attn"]["o"]["w"].std()) == pytest.approx(0.02 / 2, rel=0.05)  # / sqrt(2 n_layers)
    assert float(block["mlp"]["down"]["w"].std()) == pytest.approx(0.02 / 2, rel=0.05)


def test_float64_params_give_float64_logits_close_to_float32():
    cfg = nn.ModelConfig(**SMALL)
    params = nn.init(jax.random.key(9), cfg)
    tokens = jnp.arange(8)[None] % 13
    apply = jax.jit(nn.apply, static_argnums=2)
    logits32 = apply(params, tokens, cfg)
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        logits64 = apply(params64, tokens, cfg)
        assert logits64.dtype == jnp.float64
        np.testing.assert_allclose(logits64, logits32, atol=1e-5)
        dtypes = {a.dtype for a in jax.tree_util.tree_leaves(nn.init(jax.random.key(9), cfg, jnp.float64))}
        assert dtypes == {jnp.dtype(jnp.float64)}


def test_too_long_input_is_a_user_error():
    cfg = nn.ModelConfig(**SMALL)
    with pytest.raises(SandboxError, match="seq_len"):
        nn.apply(nn.init(jax.random.key(9), cfg), jnp.zeros((1, 9), int), cfg)
