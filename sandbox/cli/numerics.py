"""`sandbox numerics formats|errors|fd [--out DIR]`: number formats, error analysis, finite differences;
`sandbox numerics curvature --run RUN [--out DIR]`: a run's top Hessian eigenvalues with bf16 / fp16 HVPs."""

from pathlib import Path

from sandbox.cli import argtypes


def add_parser(subparsers):
    p = subparsers.add_parser("numerics", help="floating point: format constants, naive vs stable op errors, "
                                               "finite-difference step sizes, a run's Hessian in low precision "
                                               "(table + figure)")
    p.add_argument("report", choices=["formats", "errors", "fd", "curvature"], help="which report")
    p.add_argument("--run", help="curvature: a run folder made by `sandbox train`")
    p.add_argument("--top-k", type=argtypes.SIZE, default=8, help="curvature: number of top eigenvalues")
    p.add_argument("--batch-size", type=argtypes.SIZE, help="curvature: sequences of the eval set's first batch "
                                                            "(default: 8, the batch `sandbox hessian` uses)")
    p.add_argument("--out", help="output folder (default: a new runs/numerics-REPORT-<time>; "
                   "curvature: RUN/numerics-curvature-<time>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def _g(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def _print(kind: str, result: dict) -> None:
    if kind == "formats":
        print(f"{'format':12s} {'bits':>4s} {'exp':>3s} {'man':>3s} {'eps':>9s} {'u':>9s} {'min normal':>10s} "
              f"{'min subnorm':>11s} {'max finite':>10s}")
        for r in result["formats"]:
            print(f"{r['name']:12s} {r['bits']:4d} {r['exponent_bits']:3d} {r['mantissa_bits']:3d} {r['eps']:9.3g} "
                  f"{r['unit_roundoff']:9.3g} {r['smallest_normal']:10.3g} {r['smallest_subnormal']:11.3g} "
                  f"{r['largest_finite']:10.4g}")
    elif kind == "errors":
        print(f"{'op':14s} {'format':12s} {'form':6s} {'max rel':>9s} {'median rel':>10s} {'non-finite':>10s}")
        for r in result["ops"]:
            print(f"{r['op']:14s} {r['format']:12s} {r['form']:6s} {_g(r['max_rel_error']):>9s} "
                  f"{_g(r['median_rel_error']):>10s} {r['nonfinite_fraction']:10.2f}")
        print(f"\n{'format':12s} {'ln(max)':>8s} {'naive lse overflows at':>23s} {'naive softmax':>14s}")
        for r in result["overflow"]:
            print(f"{r['format']:12s} {r['theory_ln_largest']:8.3f} {_g(r['naive_logsumexp']):>23s} "
                  f"{_g(r['naive_softmax']):>14s}")
        print(f"\n{'format':9s} {'n':>7s} {'naive':>9s} {'(n-1)u':>9s} {'pairwise':>9s} {'kahan':>9s} {'2u+nu²':>9s}")
        for r in result["summation"]:
            print(f"{r['format']:9s} {r['n']:7d} {r['naive']:9.2e} {r['bound_naive']:9.2e} {r['pairwise']:9.2e} "
                  f"{r['kahan']:9.2e} {r['bound_kahan']:9.2e}")
    elif kind == "curvature":
        top = result["top_eigenvalues"]
        low = [n for n in top if n != "float64"]
        print(f"top Hessian eigenvalues of {result['run_dir']} (step {result['step']}) on eval set "
              f"{result['eval_set']}, with HVPs in each format")
        print(f"{'k':>3s} {'float64':>11s} " + " ".join(f"{n + ' (rel err)':>22s}" for n in low))
        cell = lambda n, i: (f"{'inf/NaN':>22s}" if top[n]["nonfinite"]  # noqa: E731
                             else f"{top[n]['eigenvalues'][i]:11.4g} ({top[n]['rel_error'][i]:8.1e})")
        for i, ref in enumerate(top["float64"]):
            print(f"{i + 1:3d} {ref:11.4g} " + " ".join(cell(n, i) for n in low))
        for n in low:
            print(f"{n}: {top[n]['survived']} of {len(top['float64'])} within {result['survival_rel_error']:.0%}; "
                  f"Weyl scale u*lambda_max {top[n]['weyl_scale']:.3g}"
                  + ("; its HVPs overflow (inf / NaN)" if top[n]["nonfinite"] else ""))
    else:
        print(f"{'format':8s} {'method':12s} {'best h':>9s} {'theory h':>9s} {'best error':>10s}")
        for name, b in result["best"].items():
            for method, m in b["measured"].items():
                print(f"{name:8s} {method:12s} {m['best_h']:9.2e} {_g(b['theory_h'].get(method)):>9s} "
                      f"{m['best_error']:10.2e}")


def run(args) -> int:
    from sandbox import rundir
    from sandbox.numerics.report import REPORTS
    from sandbox.train import records

    out, make, inputs = _curvature(args) if args.report == "curvature" else _report(args, REPORTS[args.report])
    with rundir.claim(out, "numerics", args.force, inputs=inputs):
        result = make(out)
        records.write_json(out / f"{args.report}.json", result)
    _print(args.report, result)
    print(f"wrote {out / f'{args.report}.json'} and {', '.join(result['figures'])}")
    return 0


def _report(args, make):
    """(output folder, report function, inputs) of formats, errors or fd."""
    from sandbox.errors import SandboxError

    if args.run:
        raise SandboxError(f"--run is for the curvature report, not {args.report!r}")
    from sandbox import rundir

    out = Path(args.out) if args.out else rundir.new_child(Path("runs"), f"numerics-{args.report}")
    return out, make, ()


def _curvature(args):
    """(output folder, report function, inputs) of the curvature report of the run --run."""
    from sandbox import analysis, rundir, validate
    from sandbox.analysis import curvature_precision
    from sandbox.errors import SandboxError

    if not args.run:
        raise SandboxError("the curvature report needs --run RUN_DIR (a run folder made by `sandbox train`)")
    validate.positive_int("", "--top-k", args.top_k)
    if args.batch_size is not None:
        validate.positive_int("", "--batch-size", args.batch_size)
    run = analysis.load(args.run)
    out = Path(args.out) if args.out else rundir.new_child(Path(args.run), "numerics-curvature")
    return out, lambda out: curvature_precision.of_run(run, out, k=args.top_k, batch_size=args.batch_size), [args.run]
