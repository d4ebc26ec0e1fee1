"""The whole sandbox in one run: train a tiny BPE LM, track sharpness, Hessian spectrum, SVD sweep, HTML report.

1. trains the tiny transformer on CPython's documentation with a byte-level BPE tokenizer trained
   on the train split, logging the top Hessian eigenvalue (sharpness) every few steps;
2. computes the final Hessian's top eigenvalues and spectral density (Lanczos, SLQ) on the first
   batch of the run's eval set;
3. sweeps SVD compression of every linear layer and measures what each rank costs in val loss on
   the run's eval set (so the uncompressed baseline is training's final val loss);
4. writes `report.html`, one self-contained page: a summary table whose every number says what it
   was measured on, and each figure with a caption in words.

A demonstration, not a paper's claim; its summary still follows `protocol.py`. Its prediction is that the
model learns: each seed's final val loss (its own eval set) ends below ln V, the loss of a uniform guess over
the V tokens, which is where training starts. `seeds` models train at once (vmapped, the first `seed`); the
Hessian and the SVD sweep look at the first.
"""

import concurrent.futures
import math
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.experiments import protocol

from sandbox import analysis
from sandbox.analysis import compression, curvature, figures, report, spectra
from sandbox.analysis.progress import reporter
from sandbox.train import config as config_lib
from sandbox.train import records, session


@dataclass
class HessianConfig:
    top_k: int = 5  # top eigenvalues (Lanczos)
    num_steps: int = 40  # Lanczos steps, also per SLQ probe
    num_probes: int = 4  # SLQ probes for the density
    batch_size: int = 8  # sequences of the eval set's first batch

    def __post_init__(self):
        curvature.CurvatureOptions(top_k=self.top_k, num_steps=self.num_steps, num_probes=self.num_probes)


@dataclass
class Config:
    base: str = "configs/tiny.yaml"  # the training config, with `overrides` (dotted keys) on top
    overrides: list[str] = field(default_factory=lambda: [
        "data.tokenizer.kind=bpe", "data.tokenizer.vocab_size=512", "train.steps=300", "train.sharpness_every=100"])
    hessian: HessianConfig = field(default_factory=HessianConfig)
    svd_fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75])
    seed: int = 0  # the first seed (train.seed)
    seeds: int = 1  # models trained at once (train.num_seeds); the analyses use the first

    def __post_init__(self):
        protocol.check_seeds(self.seed, self.seeds)


def run(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    train_cfg = config_lib.load(cfg.base, [*cfg.overrides, f"train.seed={cfg.seed}", f"train.num_seeds={cfg.seeds}"])
    run_dir = out_dir / "run"
    trained = session.start(train_cfg, run_dir, progress=progress)
    lm = analysis.load(run_dir)
    say = print if progress else (lambda *a: None)
    metrics = records.read_metrics(run_dir / "metrics.jsonl")
    captions = dict([figures.loss(metrics, out_dir / "loss.png", trained["eval_set"]),
                     figures.sharpness(metrics, out_dir / "sharpness.png", train_cfg.optimizer.name)])

    # The Hessian and the SVD sweep are independent reads of the trained run, and mostly XLA compilation, which
    # runs on one core: side by side in two threads they keep both cores busy.
    say(f"Hessian: top {cfg.hessian.top_k} eigenvalues and SLQ density ({cfg.hessian.num_probes} probes x "
        f"{cfg.hessian.num_steps} Lanczos steps), beside an SVD sweep over {len(cfg.svd_fractions)} kept fractions "
        "(mostly compiling, both at once) ...")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        hessian_job = pool.submit(_hessian, lm, cfg.hessian, out_dir / "hessian", progress)
        svd_job = pool.submit(_svd_sweep, lm, cfg.svd_fractions, out_dir / "compress", say)
        hessian, hessian_captions = hessian_job.result()
        svd, svd_captions = svd_job.result()
    say(f"Hessian on {hessian['eval_set']}: top eigenvalues "
        + ", ".join(f"{v:.4g}" for v in hessian["top_eigenvalues"]))
    captions.update({f"hessian/{k}": v for k, v in hessian_captions.items()})
    captions.update({f"compress/{k}": v for k, v in svd_captions.items()})

    sharp = [r for r in metrics if "sharpness" in r]
    extra = {
        "final_val_loss": trained["final_val_loss"],
        "eval_set": trained["eval_set"],
        "step": lm.step,
        "baseline_val_loss": svd["base"]["val_loss"],
        "tokens_per_second": trained["tokens_per_second"],
        "num_params": trained["num_params"],
        "sharpness": {r["step"]: r["sharpness"] for r in sharp},
        "sharpness_batch": f"one fixed train batch of {train_cfg.train.batch_size} windows",
        "top_hessian_eigenvalues": hessian["top_eigenvalues"],
        "hessian_eval_set": hessian["eval_set"],
        "svd": [{"kept_fraction": r["kept_fraction"], "val_loss": r["val_loss"], "change": r["change"]}
                for r in svd["rows"]],
        "captions": captions,
        "run_dir": str(run_dir),
    }
    uniform = math.log(lm.cfg.model.vocab_size)
    results = []
    for j, seed in enumerate(protocol.seed_list(cfg)):
        loss = lm.val_loss() if j == 0 else analysis.load(run_dir, seed_index=j).val_loss()
        results.append(protocol.SeedResult(seed, {"final_val_loss": loss, "uniform_loss": uniform}, loss < uniform))
    expected = protocol.Expected(
        prediction="the tiny LM learns: its val loss falls below that of a uniform guess over the vocabulary",
        source="a demonstration of the pipeline (no paper's claim)",
        rule=f"per seed: final val loss (its own eval set) < ln V = {uniform:.4f} nats (V = {lm.cfg.model.vocab_size})",
        reason="ln V is the loss of the uniform predictor, which is where training starts; a run that ends above it "
               "learnt nothing")
    summary = protocol.write(out_dir, "quickstart", cfg, expected, results, list(captions), extra)
    records.write_atomic(out_dir / "report.html", _report(summary, out_dir))
    return summary


def _hessian(lm, hc: HessianConfig, out: Path, progress: bool) -> tuple[dict, dict]:
    """(hessian.json's dict, {figure: caption}): top eigenvalues and SLQ density on the first eval batch."""
    opts = curvature.CurvatureOptions(top_k=hc.top_k, num_steps=hc.num_steps, density=True, num_probes=hc.num_probes)
    if not progress:
        hessian = curvature.of_run(lm, opts, hc.batch_size)
    else:  # a line as each stage finishes (the stages run inside one compiled program)
        with reporter(curvature.stages(opts, lm.groups(), lm.params), "Hessian") as tick:
            hessian = curvature.of_run(lm, opts, hc.batch_size, tick)
    out.mkdir()
    captions = figures.curvature(hessian, out)
    records.write_json(out / "hessian.json", hessian)
    return hessian, captions


def _svd_sweep(lm, fractions: list[float], out: Path, say) -> tuple[dict, dict]:
    """(compress.json's dict, {figure: caption}): val loss on the run's eval set per kept fraction."""
    out.mkdir()
    svd = compression.study(compression.lm_target(lm), {"svd": [{"fraction": f} for f in fractions]}, out, say)
    records.write_json(out / "compress.json", svd)
    captions = {"tradeoff.png": (
        "Val loss (nats/token) on the run's eval set against bits per weight after replacing every linear layer's "
        "W (M x N) by its best rank-k approximation U_k S_k V_k^T (Eckart-Young), keeping about the given fraction "
        "k (M + N) / (M N) of its parameters; the dashed line is the uncompressed model on the same eval set.")}
    captions.update(dict(zip(svd["figures"][1:], spectra.CAPTIONS)))
    return svd, captions


def _rows(s: dict) -> list[tuple[str, str, str]]:
    """(quantity, value, measured on) for the summary table."""
    ev, step = s["eval_set"], s["step"]
    rows = [("final val loss (nats/token)", f"{s['final_val_loss']:.4f}", f"eval set {ev}, step {step}"),
            ("uncompressed val loss, compression baseline (nats/token)", f"{s['baseline_val_loss']:.4f}",
             f"eval set {ev}, step {step} (the same set: the same number)"),
            ("parameters", f"{s['num_params']:,}", "the model"),
            ("training throughput (tokens/s)", f"{s['tokens_per_second']:.0f}", "median over logged intervals"),
            ("sharpness lambda_max(H) by step", ", ".join(f"{k}: {v:.3g}" for k, v in s["sharpness"].items()),
             s["sharpness_batch"]),
            ("top Hessian eigenvalues", ", ".join(f"{v:.4g}" for v in s["top_hessian_eigenvalues"]),
             f"eval set {s['hessian_eval_set']} (first eval batch), step {step}")]
    rows += [(f"SVD, kept fraction {r['kept_fraction']:.2f}: val loss (change)",
              f"{r['val_loss']:.4f} ({r['change']:+.4f})", f"eval set {ev}") for r in s["svd"]]
    return rows


def _report(summary: dict, out_dir: Path) -> str:
    note = ("Eval set names read val/seed S/E x B x L: E batches of B windows of L tokens from the val split, "
            "drawn from the run's seed S; [:e,:b] is its first e batches cut to b windows.")
    return report.results_page("Quickstart", _rows(summary), summary["captions"], out_dir, note,
                               {"run": (Path(summary["run_dir"]) / "config.yaml").read_text()})
