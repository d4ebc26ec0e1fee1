"""Starting and resuming runs: everything is checked before the run folder is touched."""

import dataclasses
from pathlib import Path

from sandbox import config as config_lib
from sandbox import optim
from sandbox.text.data import load_dataset
from sandbox.text.tokenizer import run_tokenizer, save_tokenizer
from sandbox.train import checkpoint, records
from sandbox.train import mesh as mesh_lib
from sandbox.train.loop import train


def _checked(cfg: config_lib.Config, run_dir: Path | None):
    """(cfg with the tokenizer's vocab size, dataset); raises SandboxError on any bad input."""
    tokenizer = run_tokenizer(cfg.data, run_dir) if run_dir is not None else None
    data = load_dataset(cfg.data, cfg.model.seq_len, tokenizer)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=data.tokenizer.vocab_size))
    optim.build(cfg.optimizer, cfg.train.steps)
    mesh_lib.make_mesh(cfg.train.num_devices, cfg.train.batch_size)
    return cfg, data


def start(cfg: config_lib.Config, run_dir: Path, force: bool = False, progress: bool = True) -> dict:
    """A new run in `run_dir` (which must be new or empty, unless `force`)."""
    cfg, data = _checked(cfg, None)
    records.prepare_new_dir(run_dir, force)
    records.write_atomic(run_dir / "config.yaml", config_lib.to_yaml(cfg))
    save_tokenizer(data.tokenizer, run_dir)
    return train(cfg, run_dir, data, progress=progress)


def resume(run_dir: Path, overrides: list[str] = (), progress: bool = True) -> dict:
    """Continue the run in `run_dir` from its latest checkpoint (overrides may extend train.steps)."""
    cfg = checkpoint.load_config(run_dir)
    if overrides:
        cfg = config_lib.resolve(config_lib.OmegaConf.structured(cfg), overrides)
    if not checkpoint.saved_steps(run_dir):
        raise config_lib.SandboxError(f"--resume {run_dir}: the folder has no checkpoint to continue from")
    cfg, data = _checked(cfg, run_dir)
    records.write_atomic(run_dir / "config.yaml", config_lib.to_yaml(cfg))
    return train(cfg, run_dir, data, resume=True, progress=progress)
