"""sandbox.analysis on the shared tiny run: one eval set gives one number everywhere; groups; requests."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from sandbox import analysis
from sandbox.analysis import compression, curvature
from sandbox.errors import SandboxError
from sandbox.nn import groups as groups_lib
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig
from sandbox.train import objective


@pytest.fixture(scope="module")
def run(tiny_run):
    return analysis.load(tiny_run[0])


def test_training_val_loss_is_the_analysis_baseline_on_the_same_eval_set(run, tiny_run):
    trained = tiny_run[1]
    assert run.eval_set.name == trained["eval_set"] == "val/seed0/2x8x32"
    assert run.step == trained["steps"]
    assert run.val_loss() == pytest.approx(trained["final_val_loss"], rel=1e-6)
    target = compression.lm_target(run)
    assert target.info["eval_set"] == trained["eval_set"]
    assert target.evaluate(run.params)["val_loss"] == pytest.approx(trained["final_val_loss"], rel=1e-6)


def test_eval_set_is_fixed_by_the_seed_and_subsets_are_named_prefixes(run):
    again = objective.eval_set(run.cfg, run.data.val_N)
    np.testing.assert_array_equal(again.inputs_ExBxL, run.eval_set.inputs_ExBxL)
    np.testing.assert_array_equal(run.eval_set.inputs_ExBxL[:, :, 1:], run.eval_set.targets_ExBxL[:, :, :-1])
    sub = run.eval_subset(1, 4)
    assert sub.name == "val/seed0/2x8x32[:1,:4]"
    np.testing.assert_array_equal(sub.batch(0)["inputs"], run.eval_set.batch(0)["inputs"][:4])
    bigger = run.eval_subset(3, 8)  # beyond the run's set: another set, named by its sizes
    assert bigger.name == "val/seed0/3x8x32" and bigger.num_tokens == 3 * 8 * 32
    cfg = run.cfg
    other = objective.eval_set(type(cfg)(cfg.model, cfg.data, cfg.optimizer,
                                         type(cfg.train)(**{**cfg.train.__dict__, "seed": 1}), cfg.run), run.data.val_N)
    assert other.name == "val/seed1/2x8x32" and not np.array_equal(other.inputs_ExBxL, run.eval_set.inputs_ExBxL)
    with pytest.raises(SandboxError, match="cannot take"):
        run.eval_set.take(3, 4)


@pytest.mark.parametrize("tie", [True, False])
def test_transformer_groups_cover_every_leaf_once_and_match_the_inferred_ones(tie):
    cfg = ModelConfig(vocab_size=11, seq_len=8, d_model=8, n_layers=2, n_heads=2, d_ff=16, tie_embeddings=tie,
                      mlp="swiglu")
    params = transformer.init(jax.random.PRNGKey(0), cfg)
    groups = transformer.param_groups(params)
    leaves = ["/".join(k) for k in traverse_util.flatten_dict(params)]
    owners = {leaf: [p for p in groups_lib.blocks(groups) if leaf == p or leaf.startswith(p + "/")] for leaf in leaves}
    assert all(len(o) == 1 for o in owners.values()), owners
    assert groups_lib.infer(params) == groups
    assert ("unembed" in groups["embeddings"]) is (not tie)


def test_curvature_request_checks():
    with pytest.raises(SandboxError, match="exceeds the operator's dimension 10"):
        curvature.check_request(10, curvature.CurvatureOptions(top_k=11))
    with pytest.raises(SandboxError, match="GiB of Lanczos vectors"):  # 10^12 parameters x 81 vectors
        curvature.check_request(10**12, curvature.CurvatureOptions(top_k=5))
    opts = curvature.CurvatureOptions(top_k=5, num_steps=20, density=True, num_probes=3)
    assert curvature.memory_bytes(1000, opts) == 21 * 1000 * 4  # the 3 probes' runs one at a time on CPU
    # bases of 81 vectors 10x over free memory, 4 plain vectors within half of it: the plain route, no refusal
    big = curvature.free_bytes() // (4 * 4 * 2)
    assert curvature.route(big, curvature.CurvatureOptions(top_k=5)) == curvature.PLAIN
    curvature.check_request(big, curvature.CurvatureOptions(top_k=5))
    with pytest.raises(SandboxError, match="--blocks keeps a Lanczos basis per block"):
        curvature.check_request(big, curvature.CurvatureOptions(top_k=5, blocks=True))
    assert curvature.route(1000, curvature.CurvatureOptions(top_k=5)) == "lanczos"
    with pytest.raises(SandboxError, match="hessian.operator='newton' is not known"):
        curvature.CurvatureOptions(operator="newton")


def test_data_loading_takes_a_tokenizer_not_a_folder(run):
    from sandbox.text.data import load_dataset
    from sandbox.text.tokenizer import ByteTokenizer

    again = load_dataset(run.cfg.data, run.cfg.model.seq_len, run.tokenizer)
    assert again.tokenizer is run.tokenizer
    np.testing.assert_array_equal(again.val_N, run.data.val_N)
    from sandbox.text import corpus

    cfg = run.cfg.data.__class__(corpus="pydoc", val_fraction=0.1)
    data = load_dataset(cfg, 32, ByteTokenizer())
    text = corpus.load_text("pydoc")
    assert bytes(data.val_N.astype(np.uint8)) == text[int(len(text) * 0.9):].encode("utf-8")
