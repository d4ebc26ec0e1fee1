"""`sandbox compress RUN_DIR|minilm --method svd,svd-whiten,asvd,quantize,prune [sweep options] --out DIR`.

Sweeps each method over its settings, scores every compressed model (val loss for a trained run,
embedding fidelity for MiniLM) and writes compress.json plus figures into --out.
"""

from pathlib import Path

SVD_FRACTIONS = "0.05,0.1,0.2,0.3,0.4,0.5,0.7,0.9"


def add_parser(subparsers):
    p = subparsers.add_parser("compress", help="SVD / quantization / pruning sweeps of a run's weights or of MiniLM")
    p.add_argument("target", help="a run folder, or 'minilm' for the pretrained all-MiniLM-L6-v2")
    p.add_argument("--method", default="svd,svd-whiten,asvd,quantize,prune",
                   help="comma list of svd, svd-whiten, asvd, quantize, prune (default: all)")
    p.add_argument("--fractions", default=SVD_FRACTIONS, help="SVD: kept parameter fractions per layer")
    p.add_argument("--ranks", help="SVD: fixed ranks instead of --fractions, e.g. 4,8,16")
    p.add_argument("--energies", help="SVD: kept energy sum s_i^2 instead of --fractions, e.g. 0.9,0.99")
    p.add_argument("--budget", action="store_true", help="SVD: read --fractions as one global parameter budget")
    p.add_argument("--bits", default="8,4", help="quantize: integer widths (4, 8)")
    p.add_argument("--granularity", default="tensor,channel,group", help="quantize: tensor, channel, group")
    p.add_argument("--group-size", type=int, default=32, help="quantize: rows per group (must divide D_in)")
    p.add_argument("--asymmetric", action="store_true", help="quantize: asymmetric (zero point) instead of symmetric")
    p.add_argument("--floats", default="bfloat16,float16", help="quantize: float casts to add ('' for none)")
    p.add_argument("--sparsities", default="0.1,0.3,0.5,0.7,0.9", help="prune: magnitude sparsities")
    p.add_argument("--nm", default="2:4", help="prune: N:M patterns ('' for none)")
    p.add_argument("--step", type=int, help="run: checkpoint step (default: latest)")
    p.add_argument("--eval-batches", type=int, default=4, help="run: val batches for the loss")
    p.add_argument("--batch-size", type=int, default=16, help="run: windows per val/calibration batch")
    p.add_argument("--calib-batches", type=int, default=4, help="run: batches of calibration activations")
    p.add_argument("--sentences", type=int, default=300, help="minilm: evaluation sentences")
    p.add_argument("--out", required=True, help="output folder for compress.json and figures")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.set_defaults(func=run)


def _numbers(text: str, kind, option: str) -> list:
    from sandbox.errors import SandboxError

    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SandboxError(f"{option} {text!r} is not a comma list of {kind.__name__} values") from None


def plan(args) -> dict:
    """{method: [setting, ...]} from the command-line options."""
    from sandbox.compress import model as cmodel
    from sandbox.compress import quantize
    from sandbox.errors import SandboxError

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    bad = [m for m in methods if m not in cmodel.METHODS]
    if bad or not methods:
        raise SandboxError(f"--method {args.method!r} is invalid: choose from {', '.join(cmodel.METHODS)}")
    if args.ranks:
        svd = [{"rank": r} for r in _numbers(args.ranks, int, "--ranks")]
    elif args.energies:
        svd = [{"energy": e} for e in _numbers(args.energies, float, "--energies")]
    else:
        svd = [{"budget" if args.budget else "fraction": f} for f in _numbers(args.fractions, float, "--fractions")]
    quant = [{"dtype": d.strip()} for d in args.floats.split(",") if d.strip()]
    for d in quant:
        if d["dtype"] not in quantize.FLOAT_DTYPES:
            raise SandboxError(f"--floats {d['dtype']!r} is not supported: choose from {', '.join(quantize.FLOAT_DTYPES)}")
    for bits in _numbers(args.bits, int, "--bits"):
        if bits not in quantize.BITS:
            raise SandboxError(f"--bits {bits} is not supported: choose from {', '.join(map(str, quantize.BITS))}")
        for gran in (g.strip() for g in args.granularity.split(",") if g.strip()):
            quant.append({"bits": bits, "symmetric": not args.asymmetric, "granularity": gran, "group_size": args.group_size})
    pruning = [{"sparsity": s} for s in _numbers(args.sparsities, float, "--sparsities")]
    for nm in (x.strip() for x in args.nm.split(",") if x.strip()):
        n, _, m = nm.partition(":")
        if not (n.isdigit() and m.isdigit()):
            raise SandboxError(f"--nm {nm!r} is not of the form N:M, e.g. 2:4")
        pruning.append({"n": int(n), "m": int(m)})
    by_method = {"svd": svd, "svd-whiten": svd, "asvd": svd, "quantize": quant, "prune": pruning}
    return {m: by_method[m] for m in methods}


def lm_target(run_dir: str, args):
    """A trained run as a `Target`: mean val loss over fixed batches; calibration on other val batches."""
    import jax

    from sandbox.compress import model as cmodel
    from sandbox.compress.report import Target
    from sandbox.nn import transformer
    from sandbox.train import checkpoint, objective

    cfg, params, step = checkpoint.load_run(run_dir, args.step)
    batch = lambda i: objective.eval_batch(cfg, jax.random.PRNGKey(i), args.batch_size, run_dir)
    evals = [batch(i) for i in range(args.eval_batches)]
    loss = jax.jit(lambda p, b: objective.lm_loss(p, b, cfg.model))

    def evaluate(p):
        return {"val_loss": float(sum(loss(p, b) for b in evals) / len(evals))}

    def calibrate():
        calib = [batch(10_000 + i)["inputs"] for i in range(args.calib_batches)]
        return cmodel.calibrate(lambda p, t: transformer.apply(p, t, cfg.model), params, calib)

    info = {"run": str(run_dir), "step": step, "eval_tokens": args.eval_batches * args.batch_size * cfg.model.seq_len}
    return Target(name=Path(run_dir).name, params=params, evaluate=evaluate, metric="val_loss",
                  calibrate=calibrate, info=info)


def load_params(target: str, step=None):
    """(title, params) of a run folder's checkpoint or of MiniLM."""
    if target == "minilm":
        from sandbox.pretrained import minilm

        return "all-MiniLM-L6-v2", minilm.load().params
    from sandbox.train import checkpoint

    _, params, _ = checkpoint.load_run(target, step)
    return Path(target).name, params


def run(args) -> int:
    from sandbox.compress import report, sweep
    from sandbox.train import records

    settings = plan(args)
    if args.target == "minilm":
        from sandbox.pretrained import minilm_compress

        target = minilm_compress.target(n_sentences=args.sentences)
    else:
        target = lm_target(args.target, args)
    sweep.validate(target.params, settings)
    out = records.prepare_new_dir(Path(args.out), args.force)
    summary = report.study(target, settings, out)
    records.write_json(out / "compress.json", summary)
    print(f"wrote {out / 'compress.json'} and {', '.join(summary['figures'])} ({summary['seconds']:.1f} s)")
    return 0
