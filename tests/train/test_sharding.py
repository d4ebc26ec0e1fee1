"""train.sharding on 8 simulated CPU devices (tests/conftest.py): fsdp and fsdp_tp train exactly as one
device does, hold ~1/8 of the state per device, and curvature on fsdp-sharded params equals one device's."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_RUN_OVERRIDES
from jax.sharding import NamedSharding, PartitionSpec

from sandbox import curvature
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig
from sandbox.train import config, session
from sandbox.train import mesh as mesh_lib

OVERRIDES = [*TINY_RUN_OVERRIDES, "train.steps=3", "train.eval_every=3", "train.log_every=1",
             "train.checkpoint_every=3"]


def _train(tmp_path, name, *extra):
    run = tmp_path / name
    summary = session.start(config.load("configs/tiny.yaml", [*OVERRIDES, *extra]), run, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return summary, np.array([r["train_loss"] for r in rows]), summary["final_val_loss"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    assert len(jax.devices()) == 8, "tests/conftest.py sets XLA_FLAGS to simulate 8 CPU devices"
    tmp = tmp_path_factory.mktemp("sharding")
    return {s: _train(tmp, s, f"train.sharding={s}", f"train.num_devices={1 if s == 'replicated' else 8}")
            for s in ("replicated", "fsdp", "fsdp_tp")}


@pytest.mark.parametrize("sharding", ["fsdp", "fsdp_tp"])
def test_sharded_training_equals_one_device(runs, sharding):
    _, want_train, want_val = runs["replicated"]
    summary, got_train, got_val = runs[sharding]
    assert summary["num_devices"] == 8 and summary["sharding"] == sharding and len(got_train) == 3
    np.testing.assert_allclose(got_train, want_train, rtol=1e-5)
    np.testing.assert_allclose(got_val, want_val, rtol=1e-5)


def test_fsdp_holds_an_eighth_of_the_state_per_device(runs):
    one, fsdp, tp = (runs[s][0] for s in ("replicated", "fsdp", "fsdp_tp"))
    assert one["params_bytes_per_device"] == 4 * one["num_params"]  # float32, all on the one device
    for key in ("params_bytes_per_device", "opt_state_bytes_per_device"):
        assert one[key] / 8 <= fsdp[key] <= 1.1 * one[key] / 8
        assert one[key] / 8 <= tp[key] < one[key] / 4  # data 4 x model 2: norms, embeddings 4-way


def test_fsdp_tp_splits_heads_and_hidden_units_over_model():
    mesh = mesh_lib.make_mesh(8, 8, "fsdp_tp", 2)
    cfg = ModelConfig(vocab_size=16, seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)
    specs = mesh_lib.state_shardings(jax.eval_shape(transformer.init, jax.random.key(0), cfg), mesh, "fsdp_tp")
    attn, mlp = specs["block_0"]["attn"], specs["block_0"]["mlp"]
    assert mesh.shape == {"data": 4, "model": 2}
    column, row = PartitionSpec("data", "model"), PartitionSpec("model", "data")
    assert attn["q"]["w"].spec == column and attn["o"]["w"].spec == row
    assert mlp["up"]["w"].spec == column and mlp["down"]["w"].spec == row
    with pytest.raises(SandboxError, match="model.n_heads=3"):
        mesh_lib.check_model_parallel(ModelConfig(d_model=12, n_heads=3), "fsdp_tp", 2)
    with pytest.raises(SandboxError, match="model.n_kv_heads=1"):
        mesh_lib.check_model_parallel(ModelConfig(d_model=12, n_heads=2, n_kv_heads=1), "fsdp_tp", 2)


CFG = ModelConfig(vocab_size=16, seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32, init_std=0.5)


def logits_fn(params, batch):
    return transformer.apply(params, batch["inputs"], CFG)


def token_ce(z, batch):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), batch["targets"][..., None], axis=-1))


def test_hvp_ggn_and_lanczos_on_fsdp_params_equal_one_device():
    with jax.enable_x64(True):
        k_init, k_tok, k_v = jax.random.split(jax.random.key(0), 3)
        params = jax.tree.map(lambda x: x.astype(jnp.float64), transformer.init(k_init, CFG))
        tokens = jax.random.randint(k_tok, (8, CFG.seq_len + 1), 0, CFG.vocab_size)
        batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
        mesh = mesh_lib.make_mesh(8, 8, "fsdp")
        sharded = jax.device_put(params, mesh_lib.state_shardings(params, mesh, "fsdp"))
        split = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
        w_q = sharded["block_0"]["attn"]["q"]["w"]
        assert w_q.addressable_shards[0].data.shape == (2, 16)  # each device holds 1/8 of it
        v = jax.random.normal(k_v, (curvature.Layout.of(params).dim,), jnp.float64)

        @jax.jit
        def products(p, b):  # HVP, two GGN-vector products and a 20-step Lanczos, one program
            ops = (curvature.hessian(lambda q, c: token_ce(logits_fn(q, c), c), p, b),
                   curvature.ggn(logits_fn, token_ce, p, b), curvature.softmax_ggn(logits_fn, p, b))
            theta_M, _ = curvature.tridiagonal_eigh(curvature.lanczos(ops[0], v, 20))
            return [op.mv(v) for op in ops], theta_M

        (want, want_ritz), (got, got_ritz) = products(params, batch), products(sharded, split)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12 * np.abs(w).max())
        np.testing.assert_allclose(got_ritz, want_ritz, rtol=1e-8, atol=1e-10 * np.abs(want_ritz).max())
