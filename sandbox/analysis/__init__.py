"""What you ask of a trained model, as functions returning data (and figures with captions).

    from sandbox import analysis
    run = analysis.load("runs/tiny-...")                        # cfg, params, tokenizer, eval set
    result = analysis.curvature.of_run(run, analysis.CurvatureOptions(top_k=5, density=True))
    summary = analysis.compression.study(analysis.compression.lm_target(run), plan, out_dir)
    table, figures = analysis.spectra.of_params(run.params, out_dir, run.name, run.groups())
    out = analysis.sample.of_run(run, "def ", 32, SamplingOptions(temperature=0.8), n=4)  # or regex=...

Any model works through `logits_fn(params, batch)` and a params pytree: see `analysis.flax_models`.
"""

from sandbox.analysis import compression, curvature, figures, flax_models, sample, spectra
from sandbox.analysis.compression import SweepOptions
from sandbox.analysis.curvature import CurvatureOptions
from sandbox.analysis.run import Run, from_training, load

__all__ = ["CurvatureOptions", "Run", "SweepOptions", "compression", "curvature", "figures", "flax_models",
           "from_training", "load", "sample", "spectra"]
