"""A tour of a real pretrained LLM: SmolLM2-135M, every analysis of the sandbox on it, in one report.

1. writes the model as an ordinary run folder (`sandbox pretrained smollm2`): the packager's 4-bit
   weights dequantized to float32, the GGUF's own tokenizer, an eval set of held-out CPython docs;
2. perplexity exp(mean next-token cross-entropy) on that eval set;
3. a greedy continuation of a prompt, and samples constrained to match a regex in full;
4. the Hessian of the eval loss: top eigenvalues (Lanczos) and spectral density (SLQ) on the default
   analysis batch;
5. per-layer weight spectra: power-law alpha of each linear layer's ESD;
6. SVD and round-to-nearest quantization of every linear layer, scored in held-out perplexity;
7. the residual stream's distance to rank one after every block (does a trained model keep its rank?).

`report.html` holds each number with what it was measured on and each figure with its caption.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import jax

from sandbox import analysis
from sandbox.analysis import compression, curvature, figures, report, residual_rank, sample, spectra
from sandbox.errors import SandboxError
from sandbox.sampling import GREEDY, SamplingOptions
from sandbox.train import records


@dataclass
class Config:
    layers: int | None = None  # all 30 blocks; fewer for a quick look
    prompt: str = "The capital of France is"
    num_tokens: int = 24
    regex: str = r"(19|20)\d\d"
    regex_prompt: str = "Python was first released in the year "
    regex_samples: int = 2
    top_k: int = 5  # Hessian eigenvalues
    num_steps: int = 30  # Lanczos steps (top-k and each SLQ probe); plain Lanczos where bases would not fit
    num_probes: int = 1  # SLQ probes for the density (one basis in memory at a time)
    svd_fractions: list[float] = field(default_factory=lambda: [0.5, 0.75])
    bits: list[int] = field(default_factory=lambda: [8, 4])
    group_size: int = 64
    diag_probes: int = 4  # Hutchinson probes of the Hessian diagonal behind the OBD prediction (one HVP each)
    seed: int = 0

    def __post_init__(self):
        if self.layers is not None and not 1 <= self.layers <= 30:
            raise SandboxError(f"layers={self.layers} must be in 1..30 (SmolLM2-135M has 30 blocks)")
        curvature.CurvatureOptions(top_k=self.top_k, num_steps=self.num_steps, num_probes=self.num_probes)


def run(cfg: Config, out_dir: Path, progress: bool = True) -> dict:
    from sandbox.pretrained import smollm2_run

    say = print if progress else (lambda *a: None)
    say("writing SmolLM2-135M as a run folder ...")
    smollm2_run.write(out_dir / "run", cfg.layers)
    lm = analysis.load(out_dir / "run")
    title = f"SmolLM2-135M ({lm.cfg.model.n_layers} of 30 blocks)"
    val_loss = lm.val_loss()
    say(f"perplexity on eval set {lm.eval_set.name}: {math.exp(val_loss):.2f} (loss {val_loss:.4f} nats/token)")

    greedy = sample.of_run(lm, cfg.prompt, cfg.num_tokens, GREEDY)
    constrained = sample.of_run(lm, cfg.regex_prompt, 8, SamplingOptions(temperature=0.7), cfg.seed,
                                n=cfg.regex_samples, regex=cfg.regex)
    say(f"greedy: {cfg.prompt!r} -> {greedy['texts'][0]!r}; constrained to {cfg.regex!r}: {constrained['texts']}")

    say("Hessian spectrum ...")
    opts = curvature.CurvatureOptions(top_k=cfg.top_k, num_steps=cfg.num_steps, density=True,
                                      num_probes=cfg.num_probes, seed=cfg.seed)
    hessian = curvature.of_run(lm, opts)
    (out_dir / "hessian").mkdir()
    captions = {f"hessian/{k}": v for k, v in figures.curvature(hessian, out_dir / "hessian").items()}
    records.write_json(out_dir / "hessian" / "hessian.json", hessian)
    say(f"top Hessian eigenvalues on {hessian['eval_set']}: " + ", ".join(f"{v:.4g}" for v in
                                                                          hessian["top_eigenvalues"]))

    say("weight spectra ...")
    (out_dir / "spectra").mkdir()
    layer_table, spectra_captions = spectra.of_params(lm.params, out_dir / "spectra", title, lm.groups())
    captions.update({f"spectra/{k}": v for k, v in spectra_captions.items()})

    say("compression sweep ...")
    (out_dir / "compress").mkdir()
    settings = {"svd": [{"fraction": f} for f in cfg.svd_fractions],
                "quantize": [{"bits": b, "symmetric": True, "granularity": "group", "group_size": cfg.group_size}
                             for b in cfg.bits]}
    target = compression.lm_target(lm, compression.SweepOptions(diag_probes=cfg.diag_probes))
    sweep = compression.study(target, settings, out_dir / "compress", say)
    captions.update({f"compress/{sweep['figures'][0]}": (
        "Held-out loss (nats/token; perplexity is its exponential) on the run's eval set against bits per "
        "weight: each linear layer's W replaced by its best rank-k approximation (SVD, Eckart-Young) or rounded "
        "to a b-bit grid per group of weights (round to nearest); dashed: the uncompressed model.")})

    say("residual-stream rank ...")
    ranks = residual_rank.per_layer(lm.params, lm.eval_set.batch(0)["inputs"], lm.cfg.model)
    captions["residual_rank.png"] = residual_rank.CAPTION
    residual_rank.figure(ranks, out_dir / "residual_rank.png", title)

    summary = {
        "model": title, "num_params": sum(int(x.size) for x in jax.tree.leaves(lm.params)),
        "eval_set": lm.eval_set.name, "val_loss": val_loss, "perplexity": math.exp(val_loss),
        "greedy": {"prompt": cfg.prompt, "continuation": greedy["texts"][0]},
        "constrained": {"prompt": cfg.regex_prompt, "regex": cfg.regex, "samples": constrained["texts"],
                        "matched": constrained["matched"], "canonical": constrained["canonical"]},
        "hessian": {"eval_set": hessian["eval_set"], "top_eigenvalues": hessian["top_eigenvalues"],
                    "residuals": hessian["residuals"]},
        "alpha": {name: row["alpha"] for name, row in layer_table.items()},
        "compression": [{"method": r["method"], "setting": r["setting"], "bits_per_weight": r["bits_per_weight"],
                         "val_loss": r["val_loss"], "perplexity": math.exp(r["val_loss"]),
                         "predicted_delta_loss": r.get("predicted_delta_loss")} for r in sweep["rows"]],
        "residual_rank": ranks, "figures": captions,
    }
    records.write_json(out_dir / "summary.json", summary)
    records.write_atomic(out_dir / "report.html", report.results_page(
        f"A tour of {title}", _rows(summary), captions, out_dir, _NOTE,
        {"run": (out_dir / "run" / "config.yaml").read_text()}))
    say(f"wrote {out_dir / 'report.html'}")
    return summary


_NOTE = ("The weights were 4-bit quantized by the packager (Q4_1, embedding Q8_0): the dequantized float32 "
         "model is the subject. Eval set names read val/seed S/E x B x L: E batches of B windows of L tokens of "
         "held-out text; [:e,:b] is its first e batches cut to b windows.")


def _rows(s: dict) -> list[tuple[str, str, str]]:
    ev = s["eval_set"]
    rows = [("perplexity exp(loss)", f"{s['perplexity']:.2f}", f"eval set {ev}"),
            ("mean next-token loss (nats/token)", f"{s['val_loss']:.4f}", f"eval set {ev}"),
            ("greedy continuation", repr(s["greedy"]["continuation"]), f"prompt {s['greedy']['prompt']!r}"),
            (f"samples matching {s['constrained']['regex']}", ", ".join(map(repr, s["constrained"]["samples"])),
             f"prompt {s['constrained']['prompt']!r}, temperature 0.7"),
            ("top Hessian eigenvalues", ", ".join(f"{v:.4g}" for v in s["hessian"]["top_eigenvalues"]),
             f"eval set {s['hessian']['eval_set']} (the default analysis batch)"),
            ("power-law alpha per layer (min .. max)", f"{min(s['alpha'].values()):.2f} .. "
             f"{max(s['alpha'].values()):.2f}", "each linear layer's ESD of W^T W")]
    rows += [(f"{r['method']} {r['setting']}: perplexity (loss change; predicted g.d + d.Hd/2)",
              f"{r['perplexity']:.2f} ({r['val_loss'] - s['val_loss']:+.4f}; {r['predicted_delta_loss']:+.4f})",
              f"eval set {ev}") for r in s["compression"]]
    r1 = s["residual_rank"]["rank1_residual"]["mean"]
    rows.append(("distance to rank one r(X), embedding -> last block", f"{r1[0]:.3f} -> {r1[-1]:.3f}",
                 f"the {ev} first batch's sequences"))
    return rows
