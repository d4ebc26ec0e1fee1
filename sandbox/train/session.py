"""Starting and resuming runs: everything is checked before the run folder is touched.

A new run claims its folder (`sandbox.rundir.claim`: owned, locked). A resume holds the folder's
lock and is a continuation, never a rewrite: only settings that leave the run's mathematics alone
(`RESUMABLE`) may change, the run must go beyond its checkpoint, and each resume is recorded in
`resumes.jsonl` (from step, to step, when), so `config.yaml` keeps describing the whole run.
"""

import dataclasses
import datetime
import json
import uuid
from pathlib import Path

from omegaconf import OmegaConf

from sandbox import optim, rundir
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.text.data import load_dataset
from sandbox.text.tokenizer import run_tokenizer, save_tokenizer
from sandbox.train import checkpoint, distributed, memory, records, sharpness
from sandbox.train import config as config_lib
from sandbox.train import mesh as mesh_lib
from sandbox.train.loop import train

# how long and how often: a fresh run with these values takes exactly the same steps
RESUMABLE = ("train.steps", "train.eval_every", "train.log_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.sharpness_every", "train.sharpness_preconditioned")


def _checked(cfg: config_lib.Config, run_dir: Path | None, vocab_given: bool = False):
    """(cfg with the tokenizer's vocab size, dataset); raises SandboxError on any bad input. A
    model.vocab_size the user gave (`vocab_given`) must be the tokenizer's."""
    tokenizer = run_tokenizer(cfg.data, run_dir) if run_dir is not None else None
    data = load_dataset(cfg.data, cfg.model.seq_len, tokenizer)
    if vocab_given and cfg.model.vocab_size != data.tokenizer.vocab_size:
        raise SandboxError(f"model.vocab_size={cfg.model.vocab_size} differs from the tokenizer's "
                           f"{data.tokenizer.vocab_size} tokens; drop it (it is taken from the tokenizer) or set "
                           f"it to {data.tokenizer.vocab_size}")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=data.tokenizer.vocab_size))
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    sharpness.check(cfg)
    mesh_lib.make_mesh(cfg.train.num_devices, cfg.train.batch_size, cfg.train.sharding, cfg.train.model_parallel)
    mesh_lib.check_model_parallel(cfg.model, cfg.train.sharding, cfg.train.model_parallel)
    memory.check(cfg, optimizer, extra_bytes=data.train_N.nbytes + data.val_N.nbytes)
    return cfg, data


def dry_run(cfg: config_lib.Config, vocab_given: bool = False) -> str:
    """What `start` would train, without touching any folder: the resolved config (YAML, the tokenizer's vocab
    size filled in) and the memory estimate of one step. Raises SandboxError as `start` would."""
    cfg, data = _checked(cfg, None, vocab_given)
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    estimate = memory.describe(cfg, optimizer, extra_bytes=data.train_N.nbytes + data.val_N.nbytes)
    return f"{config_lib.to_yaml(cfg)}\n# {estimate}\n# {transformer.num_params(cfg.model):,} parameters"


def start(cfg: config_lib.Config, run_dir: Path, force: bool = False, progress: bool = True,
          vocab_given: bool = False) -> dict:
    """A new run in `run_dir` (new or empty; with `force`, a folder the sandbox made, replaced)."""
    if progress and distributed.is_primary():  # reading a corpus and fitting a BPE tokenizer take seconds
        print(f"preparing the data: corpus {cfg.data.corpus}, {cfg.data.tokenizer.kind} tokenizer ...", flush=True)
    cfg, data = _checked(cfg, None, vocab_given)
    corpus = Path(cfg.data.corpus)
    inputs = [corpus] if corpus.exists() else []
    if not distributed.is_primary():  # process 0 claims and writes the folder; the others only train
        distributed.barrier("run folder claimed")
        return train(cfg, run_dir, data, progress=False)
    text = config_lib.to_yaml(cfg)
    identity = {"run_id": uuid.uuid4().hex, **checkpoint.config_fields(text)}
    with rundir.claim(run_dir, "train", force, inputs=inputs, extra=identity):
        records.write_atomic(run_dir / "config.yaml", text)
        save_tokenizer(data.tokenizer, run_dir)
        distributed.barrier("run folder claimed")
        return train(cfg, run_dir, data, progress=progress)


def _resume_config(run_dir: Path, overrides: list[str]) -> config_lib.Config:
    """The run's config with the allowed overrides applied; anything else is refused by name."""
    saved = checkpoint.load_config(run_dir)
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key not in RESUMABLE:
            raise SandboxError(
                f"--resume cannot change {key!r}: it would change the run's mathematics, and config.yaml would "
                f"no longer describe the run. On resume only {', '.join(RESUMABLE)} may be set; "
                "start a new run for anything else (nothing was changed)")
    return config_lib.resolve(OmegaConf.structured(saved), overrides)


def _check_length(run_dir: Path, cfg: config_lib.Config, start_step: int) -> None:
    """Refuse a resume that would not go beyond `start_step`, or that would stretch a decaying schedule."""
    saved, schedule = checkpoint.load_config(run_dir).train.steps, cfg.optimizer.schedule
    further = (f"to train further pass train.steps=N with N > {start_step}" if schedule == "constant" else
               f"its {schedule} learning-rate schedule is laid out over train.steps={saved}, so it cannot be "
               "stretched: start a new run with a larger train.steps to train longer")
    if cfg.train.steps <= start_step:
        what = (f"{run_dir} has finished: it trained all {start_step} steps" if start_step == saved else
                f"train.steps={cfg.train.steps} does not go beyond the checkpoint at step {start_step}")
        raise SandboxError(f"{what}; {further} (nothing was changed)")
    if cfg.train.steps != saved and schedule != "constant":
        raise SandboxError(f"--resume cannot change train.steps here: {further} (nothing was changed)")


def _start_step(run_dir: Path, from_step: int | None) -> int:
    """The checkpoint to continue from: the latest (intact), or `from_step` if later ones are damaged."""
    steps = checkpoint.saved_steps(run_dir)
    if not steps:
        raise SandboxError(f"--resume {run_dir}: the folder has no checkpoint to continue from")
    retry = f"continue from it with `sandbox train --resume {run_dir} --from-step {{step}}`"
    if from_step is None:
        checkpoint.check_intact(run_dir, steps[-1], retry)
        return steps[-1]
    if from_step not in steps:
        raise SandboxError(f"--from-step {from_step}: no checkpoint at that step; saved steps: {steps}")
    checkpoint.check_intact(run_dir, from_step, retry)
    intact_later = [s for s in steps if s > from_step and checkpoint.damage(run_dir, s) is None]
    if intact_later:
        raise SandboxError(f"--from-step {from_step}: the checkpoint at step {intact_later[-1]} is later and intact; "
                           "resuming from an earlier one would discard it (nothing was changed)")
    return from_step


def resume(run_dir: Path, overrides: list[str] = (), progress: bool = True, from_step: int | None = None) -> dict:
    """Continue the run in `run_dir` from its latest checkpoint (or `from_step`) to train.steps."""
    run_dir = Path(run_dir)
    checkpoint.load_config(run_dir)  # a clear refusal for a folder that is not a run, before locking it
    if not distributed.is_primary():  # process 0 checks, locks and records the resume; the others only train
        distributed.barrier("resume recorded")
        cfg, data = _checked(_resume_config(run_dir, list(overrides)), run_dir)
        return train(cfg, run_dir, data, resume=True, progress=False)
    with rundir.lock(run_dir), rundir.recording(run_dir):
        cfg = _resume_config(run_dir, list(overrides))
        strangers = checkpoint.strangers(run_dir)
        if strangers:
            raise SandboxError(f"{strangers[0]} is not a checkpoint of this run (no manifest, and no save of it was "
                               "begun by it); a resume deletes nothing it did not write: move it out of "
                               "checkpoints/ (nothing was changed)")
        start_step = _start_step(run_dir, from_step)
        _check_length(run_dir, cfg, start_step)
        cfg, data = _checked(cfg, run_dir)
        checkpoint.drop(run_dir, checkpoint.unfinished_steps(run_dir))  # saves killed before they finished
        checkpoint.drop(run_dir, [s for s in checkpoint.saved_steps(run_dir) if s > start_step])  # damaged
        text = config_lib.to_yaml(cfg)
        records.write_atomic(run_dir / "config.yaml", text)
        rundir.annotate(run_dir, **checkpoint.config_fields(text))
        note = {"from_step": start_step, "to_step": cfg.train.steps, "overrides": list(overrides),
                "when": datetime.datetime.now().isoformat(timespec="seconds")}
        with open(run_dir / "resumes.jsonl", "a") as f:
            f.write(json.dumps(note) + "\n")
        distributed.barrier("resume recorded")
        return train(cfg, run_dir, data, resume=True, progress=progress)
