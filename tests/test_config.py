"""Config: presets, overrides, and bad input named clearly."""

import pytest

from sandbox.errors import SandboxError
from sandbox.train import config


def test_tiny_config_resolves_presets():
    cfg = config.load("configs/tiny.yaml")
    assert cfg.model.d_model == 64 and cfg.model.seq_len == 64
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.args["weight_decay"] == 0.1
    assert cfg.train.steps == 600 and cfg.data.corpus == "pydoc"


def test_overrides_apply_in_order():
    cfg = config.load("configs/tiny.yaml", ["train.steps=7", "optimizer=lion", "optimizer.learning_rate=1e-4",
                                             "model.pos_encoding=rope", "data.markov.order=3"])
    assert cfg.train.steps == 7
    assert cfg.optimizer.name == "lion" and cfg.optimizer.learning_rate == 1e-4
    assert cfg.model.pos_encoding == "rope" and cfg.data.markov.order == 3


def test_yaml_round_trip(tmp_path):
    cfg = config.load("configs/tiny.yaml", ["model=small", "train.batch_size=8"])
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml(cfg))
    assert config.load(path) == cfg


@pytest.mark.parametrize("override, message", [
    ("model.d_modle=3", "unknown config key 'model.d_modle'.*d_model"),
    ("trian.steps=3", "unknown config key 'trian'.*train"),
    ("train.steps=abc", "train.steps"),
    ("train.steps=0", "train.steps must be a positive integer"),
    ("model.n_heads=-1", "model.n_heads must be a positive integer"),
    ("model=huge", "unknown model preset 'huge'; valid: gpt2_small, llama_tiny, small, smollm2_135m, tiny"),
    ("optimizer.learning_rate=-1", "learning_rate must be a positive number"),
    ("optimizer.schedule=warp", "valid choices: constant, cosine, linear"),
    ("steps", "KEY=VALUE"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(SandboxError, match=message):
        config.load("configs/tiny.yaml", [override])


def test_missing_config_file():
    with pytest.raises(SandboxError, match="not found"):
        config.load("configs/nope.yaml")


def test_cli_takes_overrides_after_options(tmp_path, capsys):
    from sandbox.cli import main

    out = tmp_path / "never"
    assert main(["train", "configs/tiny.yaml", "--out", str(out), "model.widht=3"]) == 2
    assert "unknown config key 'model.widht'" in capsys.readouterr().err and not out.exists()
