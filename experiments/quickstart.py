"""The whole sandbox in one run: train a tiny BPE LM, track sharpness, Hessian spectrum, SVD sweep, HTML report.

1. trains the tiny transformer on CPython's documentation with a byte-level BPE tokenizer trained
   on the train split, logging the top Hessian eigenvalue (sharpness) every few steps;
2. computes the final Hessian's top eigenvalues and spectral density (Lanczos, SLQ);
3. sweeps SVD compression of every linear layer and measures what each rank costs in val loss;
4. writes `report.html`, one self-contained page (figures inlined) with the summary table.
"""

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import config as config_lib
from sandbox.cli import main as cli
from sandbox.errors import SandboxError
from sandbox.train import records, session


@dataclass
class Config:
    base: str = "configs/tiny.yaml"
    overrides: list[str] = field(default_factory=lambda: [
        "data.tokenizer.kind=bpe", "data.tokenizer.vocab_size=512", "train.steps=300", "train.sharpness_every=100"])
    hessian_args: list[str] = field(default_factory=lambda: ["--density", "--top-k", "5", "--num-steps", "40"])
    svd_fractions: str = "0.1,0.25,0.5,0.75"


def _sub(argv: list[str]) -> None:
    """Run one `sandbox` sub-command; its own clear errors stop the experiment."""
    if cli(argv) != 0:
        raise SandboxError(f"quickstart: `sandbox {' '.join(argv)}` failed (see the message above)")


def run(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    train_cfg = config_lib.load(cfg.base, cfg.overrides)
    run_dir = out_dir / "run"
    trained = session.start(train_cfg, run_dir, progress=progress)
    _sub(["hessian", str(run_dir), *cfg.hessian_args, "--out", str(out_dir / "hessian")])
    _sub(["compress", str(run_dir), "--method", "svd", "--fractions", cfg.svd_fractions,
          "--out", str(out_dir / "compress")])
    hessian = records.read_json(out_dir / "hessian" / "hessian.json")
    compress = records.read_json(out_dir / "compress" / "compress.json")
    sharp = [r for r in records.read_metrics(run_dir / "metrics.jsonl") if "sharpness" in r]
    summary = {
        "final_val_loss": trained["final_val_loss"],
        "tokens_per_second": trained["tokens_per_second"],
        "num_params": trained["num_params"],
        "sharpness": {r["step"]: r["sharpness"] for r in sharp},
        "top_hessian_eigenvalues": hessian["top_eigenvalues"],
        "svd": [{"kept_fraction": r["kept_fraction"], "val_loss": r["val_loss"], "change": r["change"]}
                for r in compress["rows"]],
        "run_dir": str(run_dir),
    }
    records.write_json(out_dir / "summary.json", summary)
    figures = [run_dir / "figures" / "loss.png", out_dir / "hessian" / "density.png",
               out_dir / "hessian" / "top_eigenvalues.png", out_dir / "compress" / "tradeoff.png",
               out_dir / "compress" / "singular_values.png"]
    records.write_atomic(out_dir / "report.html", _report(summary, figures))
    return summary


def _report(summary: dict, figures: list[Path]) -> str:
    rows = [("final val loss (nats/token)", f"{summary['final_val_loss']:.4f}"),
            ("parameters", f"{summary['num_params']:,}"),
            ("tokens / s", f"{summary['tokens_per_second']:.0f}"),
            ("sharpness by step", ", ".join(f"{s}: {v:.3g}" for s, v in summary["sharpness"].items())),
            ("top Hessian eigenvalues", ", ".join(f"{v:.4g}" for v in summary["top_hessian_eigenvalues"]))]
    rows += [(f"SVD, kept fraction {r['kept_fraction']:.2f}", f"val loss {r['val_loss']:.4f} ({r['change']:+.4f})")
             for r in summary["svd"]]
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(p.parent.name)}/{html.escape(p.name)}</figcaption></figure>"
        for p in figures if p.exists())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>LLM Math Sandbox quickstart</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:auto}}td{{padding:2px 12px}}"
            f"img{{max-width:100%}}</style></head><body><h1>Quickstart</h1><table>{table}</table>"
            f"{images}</body></html>")
