"""`sandbox bayes RUN`: a last-layer (unembedding) Laplace posterior of a trained LM and its calibration.

Writes OUT/bayes.json (ECE, NLL, Brier, entropy for MAP, temperature scaling and Laplace; prior
precision, evidence) and figures reliability.png and entropy.png; OUT defaults to RUN/bayes-<time>.
"""

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("bayes", help="last-layer Laplace of a trained LM: predictive entropy and calibration")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--structure", choices=("kron", "diag"), default="kron", help="posterior structure of the head")
    p.add_argument("--fit-windows", type=int, default=32, help="training windows the posterior is fitted on")
    p.add_argument("--val-windows", type=int, default=32, help="validation windows: half tune, half test")
    p.add_argument("--num-bins", type=int, default=15, help="equal-width bins of the ECE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: RUN_DIR/bayes-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import analysis, bayes, plotting, rundir
    from sandbox.analysis import laplace_lm
    from sandbox.train import records

    run = analysis.load(args.run_dir, args.step)  # not a run folder: one clear message before anything is made
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
    for name, m in result["metrics"].items():
        print(f"{name:>24}: ECE {m['ece']:.4f}  NLL {m['nll']:.4f}  Brier {m['brier']:.4f}  "
              f"entropy {m['mean_entropy']:.3f} nats")
    print(f"prior precision {result['prior_precision']:.3g} (held-out NLL), evidence optimum "
          f"{result['evidence_prior_precision']:.3g}; temperature {result['temperature']:.3f}")
    print(f"wrote {out / 'bayes.json'} and {', '.join(figures)}")
    return 0
