"""SmolLM2-135M as an ordinary run folder, so every command that opens a run works on it unchanged.

    sandbox pretrained smollm2 --out runs/smollm2 [--layers N]

The folder is what `sandbox train` leaves: the marker, `config.yaml` (model preset smollm2_135m,
the embedded pydoc corpus as data, tokenizer kind bpe), `tokenizer.json` (the GGUF's own BPE) and a
verified checkpoint at step 0 holding the dequantized float32 weights. The run's eval set is one
batch of 4 held-out windows of model.seq_len = 128 tokens (a Hessian-sized set); the optimizer
section is plain SGD, whose state is two scalars, so the checkpoint is the weights and little else.
"""

from pathlib import Path

import jax
from omegaconf import OmegaConf

from sandbox import optim, rundir
from sandbox.pretrained import smollm2
from sandbox.text.tokenizer import save_tokenizer
from sandbox.train import checkpoint, records
from sandbox.train import config as config_lib
from sandbox.train.step import state_from_params

SEQ_LEN, BATCH_SIZE, EVAL_BATCHES = 128, 4, 1


def run_config(n_layers: int | None = None) -> config_lib.Config:
    """The run's config: the smollm2_135m preset (cut to n_layers), pydoc, the GGUF's BPE, a 1 x 4 x 128 eval set."""
    raw = OmegaConf.create({
        "model": smollm2.PRESET, "optimizer": "sgd",
        "data": {"corpus": "pydoc", "tokenizer": {"kind": "bpe", "vocab_size": 49152, "pattern": "smollm"}},
        "train": {"batch_size": BATCH_SIZE, "eval_batches": EVAL_BATCHES, "steps": 1},
        "run": {"name": "smollm2"},
    })
    overrides = [f"model.seq_len={SEQ_LEN}"] + ([] if n_layers is None else [f"model.n_layers={n_layers}"])
    return config_lib.resolve(raw, overrides)


def write(run_dir: str | Path, n_layers: int | None = None, force: bool = False) -> dict:
    """Write the SmolLM2 run folder at `run_dir` (new, empty, or with `force` one the sandbox made);
    everything is read and checked before the folder is touched. Returns its summary."""
    from sandbox.text import bpe_gguf

    run_dir = Path(run_dir)
    cfg = run_config(n_layers)
    path = smollm2.gguf_path()
    reader = smollm2.read(path)  # one parse of the file for the weights and the tokenizer
    model_cfg, params = smollm2.load_from(reader, cfg.model.n_layers)
    tokenizer = bpe_gguf.from_reader(reader)
    optimizer = optim.build(cfg.optimizer, cfg.train.steps)
    state = state_from_params(params, cfg, optimizer)
    summary = {"source": str(path), "package": smollm2.PACKAGE, "n_layers": model_cfg.n_layers,
               "num_params": int(sum(a.size for a in jax.tree.leaves(params))), "step": 0,
               "weights": "4-bit quantized by the packager (Q4_1; embedding Q8_0), dequantized to float32"}
    with rundir.claim(run_dir, "pretrained smollm2", force):
        records.write_atomic(run_dir / "config.yaml", config_lib.to_yaml(cfg))
        save_tokenizer(tokenizer, run_dir)
        with checkpoint.manager(run_dir, keep=1, writer=True) as mngr:
            checkpoint.save(mngr, state)
        records.write_json(run_dir / "summary.json", summary)
    return summary
