"""`sandbox bayes RUN`: a last-layer (unembedding) Laplace posterior of a trained LM and its calibration.

Writes OUT/bayes.json (ECE, NLL, Brier, entropy for MAP, temperature scaling and Laplace; prior
precision, evidence) and figures reliability.png and entropy.png; OUT defaults to RUN/bayes-<time>.
"""

from pathlib import Path

from sandbox.cli import argtypes


def add_parser(subparsers):
    p = subparsers.add_parser("bayes", help="last-layer Laplace of a trained LM: predictive entropy and calibration")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--step", type=argtypes.STEP, help="checkpoint step (default: the latest)")
    p.add_argument("--structure", choices=("kron", "diag"), default="kron", help="posterior structure of the head")
    p.add_argument("--fit-windows", type=argtypes.count(2, 1_000_000), default=32,
                   help="training windows the posterior is fitted on")
    p.add_argument("--val-windows", type=argtypes.count(2, 1_000_000), default=32,
                   help="validation windows: half tune, half test")
    p.add_argument("--num-bins", type=argtypes.count(1, 100_000), default=15, help="equal-width bins of the ECE")
    p.add_argument("--seed", type=argtypes.SEED, default=0, help="key of the random draws")
    p.add_argument("--out", help="output folder (default: RUN_DIR/bayes-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import analysis, bayes, plotting, rundir
    from sandbox.analysis import laplace_lm
    from sandbox.train import records

    run = analysis.load(args.run_dir, args.step)  # not a run folder: one clear message before anything is made
    _check_windows(run, args.fit_windows, args.val_windows)
    out = Path(args.out) if args.out else rundir.new_child(Path(args.run_dir), "bayes")
    with rundir.claim(out, "bayes", args.force, inputs=[args.run_dir]) as out:
        result, probs, labels = laplace_lm.lm_laplace(
            run, structure=args.structure, fit_windows=args.fit_windows, val_windows=args.val_windows,
            num_bins=args.num_bins, seed=args.seed)
        records.write_json(out / "bayes.json", result)
        figures = [plotting.save(bayes.reliability_diagram(probs, labels, args.num_bins,
                                                           "next-token reliability (validation)"),
                                 out / "reliability.png"),
                   plotting.save(laplace_lm.entropy_figure(probs, labels), out / "entropy.png")]
    print(f"on {result['test_tokens']:,} test tokens (± one bootstrap standard error):")
    for name, m in result["metrics"].items():
        print(f"{name:>24}: ECE {m['ece']:.4f} ± {m['ece_se']:.4f}  NLL {m['nll']:.4f} ± {m['nll_se']:.4f} nats  "
              f"Brier {m['brier']:.4f} ± {m['brier_se']:.4f}  mean entropy {m['mean_entropy']:.3f} nats")
    print(f"prior precision {result['prior_precision']:.3g} (lowest held-out NLL on {result['prior_grid']}), "
          f"evidence optimum {result['evidence_prior_precision']:.3g}; temperature {result['temperature']:.3f}")
    edge = result["prior_at_grid_edge"]
    if edge:
        print(f"note: the prior precision is the {edge} end of its grid: the held-out NLL was still falling there, "
              "so the best prior may lie beyond it" + ("; so large a prior makes Laplace nearly the MAP"
                                                        if edge == "upper" else ""))
    print(f"wrote {out / 'bayes.json'} and {', '.join(figures)}")
    return 0


def _check_windows(run, fit_windows: int, val_windows: int) -> None:
    """Refuse, before any folder is made, more windows than a split holds (distinct start positions), or
    windows whose features and predictive probabilities cannot fit: windows x seq_len positions x
    (d_model + 4 vocab) float32 (features; logits, probabilities, a copy each), times 4 for the rest."""
    import os

    from sandbox.errors import SandboxError

    m = run.cfg.model
    for flag, windows, split, tokens in (("--fit-windows", fit_windows, "train", run.data.train_N),
                                         ("--val-windows", val_windows, "val", run.data.val_N)):
        held = max(len(tokens) - m.seq_len, 0)
        if windows > held:
            raise SandboxError(f"{flag} {windows:,} exceeds the {held:,} windows of {m.seq_len} tokens the {split} "
                               f"split holds; use at most {held:,}")
    windows = fit_windows + val_windows
    need = 4 * windows * m.seq_len * (m.d_model + 4 * m.vocab_size) * 4
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > free:
        raise SandboxError(f"--fit-windows + --val-windows = {windows:,} windows of {m.seq_len} tokens need about "
                           f"{need / 2**30:.1f} GiB (features and {m.vocab_size}-way probabilities) but only "
                           f"{free / 2**30:.1f} GiB of RAM is free; use fewer windows")
