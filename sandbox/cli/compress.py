"""`sandbox compress RUN_DIR|minilm --method svd,svd-whiten,asvd,quantize,prune,gptq,sparsegpt [options] [--out DIR]`.

Sweeps each method over its settings, scores every compressed model (val loss on the run's eval
set for a trained run, embedding fidelity for MiniLM) and writes compress.json plus figures into
OUT (default: a new RUN_DIR/compress-<timestamp>, or compress-minilm-<timestamp>).
"""

from pathlib import Path

from sandbox.cli import argtypes


def add_parser(subparsers):
    from sandbox.compress.methods import METHODS

    names = ",".join(METHODS)
    p = subparsers.add_parser("compress", help="SVD / quantization / pruning sweeps of a run's weights or of MiniLM")
    p.add_argument("target", help="a run folder, or 'minilm' for the pretrained all-MiniLM-L6-v2")
    p.add_argument("--method", default=names, help=f"comma list of {', '.join(METHODS)} (default: all)")
    p.add_argument("--fractions", default="0.05,0.1,0.2,0.3,0.4,0.5,0.7,0.9",
                   help="SVD: kept parameter fractions per layer")
    p.add_argument("--ranks", help="SVD: fixed ranks instead of --fractions, e.g. 4,8,16")
    p.add_argument("--energies", help="SVD: kept energy sum s_i^2 instead of --fractions, e.g. 0.9,0.99")
    p.add_argument("--budget", action="store_true", help="SVD: read --fractions as one global parameter budget")
    p.add_argument("--bits", default="8,4", help="quantize: integer widths (4, 8)")
    p.add_argument("--granularity", default="tensor,channel,group", help="quantize: tensor, channel, group")
    p.add_argument("--group-size", type=argtypes.count(1, 2**31 - 1), default=32,
                   help="quantize: rows per group (must divide D_in)")
    p.add_argument("--asymmetric", action="store_true", help="quantize: asymmetric (zero point) instead of symmetric")
    p.add_argument("--act-order", action="store_true", help="gptq: quantize input rows in decreasing activation energy")
    p.add_argument("--floats", default="bfloat16,float16", help="quantize: float casts to add ('' for none)")
    p.add_argument("--sparsities", default="0.1,0.3,0.5,0.7,0.9", help="prune: magnitude sparsities")
    p.add_argument("--nm", default="2:4", help="prune: N:M patterns ('' for none)")
    p.add_argument("--step", type=argtypes.STEP, help="run: checkpoint step (default: latest)")
    p.add_argument("--eval-batches", type=argtypes.count(1, 100_000),
                   help="run: eval batches (default: the run's eval set's)")
    p.add_argument("--batch-size", type=argtypes.count(1, 1_000_000),
                   help="run: windows per eval/calibration batch (default: train.batch_size)")
    p.add_argument("--calib-batches", type=argtypes.count(1, 100_000), default=4,
                   help="run: batches of calibration activations (train split)")
    p.add_argument("--diag-probes", type=argtypes.count(1, 100_000), default=32,
                   help="run: Hutchinson probes of the Hessian diagonal behind predicted_delta_loss_diag")
    p.add_argument("--sentences", type=argtypes.count(1, 100_000), default=300, help="minilm: evaluation sentences")
    p.add_argument("--out", help="output folder (default: a new RUN_DIR/compress-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def _list(text: str, kind, option: str) -> tuple:
    from sandbox.errors import SandboxError

    try:
        return tuple(kind(x) for x in (text or "").split(",") if x.strip())
    except ValueError:
        raise SandboxError(f"{option} {text!r} is not a comma list of {kind.__name__} values") from None


def _nm(text: str) -> tuple:
    from sandbox.errors import SandboxError

    pairs = []
    for nm in (x.strip() for x in text.split(",") if x.strip()):
        n, _, m = nm.partition(":")
        if not (n.isdigit() and m.isdigit()):
            raise SandboxError(f"--nm {nm!r} is not of the form N:M, e.g. 2:4")
        pairs.append((int(n), int(m)))
    return tuple(pairs)


def options(args):
    """The typed `SweepOptions` of the command line (checked: nothing is read or written before)."""
    from sandbox.analysis.compression import SweepOptions

    return SweepOptions(
        methods=_list(args.method, str.strip, "--method"), fractions=_list(args.fractions, float, "--fractions"),
        ranks=_list(args.ranks, int, "--ranks"), energies=_list(args.energies, float, "--energies"),
        budget=args.budget, bits=_list(args.bits, int, "--bits"),
        granularities=_list(args.granularity, str.strip, "--granularity"), group_size=args.group_size,
        symmetric=not args.asymmetric, act_order=args.act_order, floats=_list(args.floats, str.strip, "--floats"),
        sparsities=_list(args.sparsities, float, "--sparsities"), nm=_nm(args.nm),
        eval_batches=args.eval_batches, batch_size=args.batch_size, calib_batches=args.calib_batches,
        diag_probes=args.diag_probes)


def run(args) -> int:
    from sandbox import analysis, rundir
    from sandbox.analysis import compression
    from sandbox.train import records

    opts = options(args)
    settings = compression.plan(opts)
    if args.target == "minilm":
        from sandbox.pretrained import minilm_compress

        target, parent, inputs = minilm_compress.target(n_sentences=args.sentences), Path("."), []
        kind = "compress-minilm"
    else:
        run_ = analysis.load(args.target, args.step)
        target, parent, inputs, kind = compression.lm_target(run_, opts), Path(args.target), [args.target], "compress"
    compression.check(target, settings)
    out = Path(args.out) if args.out else rundir.new_child(parent, kind)
    with rundir.claim(out, "compress", args.force, inputs=inputs):
        summary = compression.study(target, settings, out)
        records.write_json(out / "compress.json", summary)
    where = f" on eval set {summary['eval_set']}" if "eval_set" in summary else ""
    print(f"wrote {out / 'compress.json'} and {', '.join(summary['figures'])}{where} ({summary['seconds']:.1f} s)")
    return 0
