"""`sandbox hessian RUN_DIR`: curvature spectra of a run's checkpoint on a validation batch.

Writes OUT/hessian.json (top_eigenvalues, residuals, trace, density {grid, values}, blocks) and
figures: density.png (log scale), top_eigenvalues.png, and with --blocks blocks_density.png.
"""

from pathlib import Path

OPERATORS = ("hessian", "ggn", "fisher")


def add_parser(subparsers):
    p = subparsers.add_parser("hessian", help="Hessian/GGN/Fisher spectra of a run's checkpoint")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    p.add_argument("--top-k", type=int, default=10, help="number of top eigenvalues (Lanczos)")
    p.add_argument("--density", action="store_true", help="spectral density by SLQ")
    p.add_argument("--trace", action="store_true", help="trace by Hutch++")
    p.add_argument("--blocks", action="store_true",
                   help="also per block: embed, each block_i and its attn/mlp, ...")
    p.add_argument("--operator", choices=OPERATORS, default="hessian",
                   help="hessian, ggn (Gauss-Newton) or fisher (Monte-Carlo, softmax)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/hessian)")
    p.add_argument("--batch-size", type=int, default=8, help="validation sequences in the batch")
    p.add_argument("--num-steps", type=int, default=80, help="Lanczos steps (eigenvalues, SLQ)")
    p.add_argument("--num-probes", type=int, default=4, help="SLQ probes")
    p.add_argument("--num-matvecs", type=int, default=60, help="matvecs for the trace")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import jax
    from rich.progress import Progress

    from sandbox.errors import SandboxError
    from sandbox.train import checkpoint, objective, records

    if args.top_k < 1 or args.batch_size < 1:
        raise SandboxError(f"--top-k ({args.top_k}) and --batch-size ({args.batch_size}) must be >= 1")
    cfg, params, step = checkpoint.load_run(args.run_dir, step=args.step)
    key_data, key_op, key_solve = jax.random.split(jax.random.key(args.seed), 3)
    batch = objective.eval_batch(cfg, key_data, args.batch_size, args.run_dir)
    op = build_operator(args.operator, params, batch, cfg.model, key_op)
    targets = [("all", op)]
    if args.blocks:
        targets += [(name, op.block(name)) for name in block_names(params)]
    out_dir = Path(args.out) if args.out else Path(args.run_dir) / "hessian"
    result = {"run_dir": str(args.run_dir), "step": step, "operator": args.operator,
              "fisher_kind": "mc" if args.operator == "fisher" else None,
              "batch_size": args.batch_size, "dim": op.dim}
    per_target = {}
    stages = 1 + args.density + args.trace
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{args.operator} spectra", total=stages * len(targets))
        for name, target in targets:
            progress.update(task, description=f"{name}: top-{args.top_k} eigenvalues")
            per_target[name] = analyse(target, args, key_solve, progress, task)
    result.update(per_target.pop("all"))
    if per_target:
        result["blocks"] = per_target
    out_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(out_dir / "hessian.json", result)
    figures = write_figures(result, out_dir, args.operator)
    print(f"{args.operator} at step {step}: dim {op.dim}, top eigenvalues "
          + ", ".join(f"{v:.4g}" for v in result["top_eigenvalues"][:5])
          + (f", trace {result['trace']:.4g}" if "trace" in result else ""))
    print(f"wrote {out_dir / 'hessian.json'} and {', '.join(figures)}")
    return 0


def build_operator(kind, params, batch, model_cfg, key):
    """The curvature operator of the run's own objective (`lm_loss`) on `batch`."""
    from sandbox import curvature, losses
    from sandbox.nn import transformer
    from sandbox.train import objective

    def logits_fn(p, b):
        return transformer.apply(p, b["inputs"], model_cfg)

    if kind == "hessian":
        return curvature.hessian(lambda p, b: objective.lm_loss(p, b, model_cfg), params, batch)
    if kind == "ggn":
        token_ce = lambda z, b: losses.cross_entropy(z, b["targets"]).mean()  # noqa: E731
        return curvature.ggn(logits_fn, token_ce, params, batch)
    return curvature.fisher(logits_fn, params, batch, kind="mc", key=key)


def block_names(params):
    """Top-level entries, and for each transformer block its attention and MLP."""
    names = []
    for name, sub in params.items():
        names.append(name)
        names += [f"{name}/{part}" for part in ("attn", "mlp") if isinstance(sub, dict) and part in sub]
    return names


def analyse(op, args, key, progress, task):
    from sandbox import curvature

    out = {"dim": op.dim}
    k = min(args.top_k, op.dim)
    pairs = curvature.eigenpairs(op, k, key=key, num_steps=max(args.num_steps, k))
    out["top_eigenvalues"] = [float(v) for v in pairs.values_K]
    out["residuals"] = [float(r) for r in pairs.residuals_K]
    progress.advance(task)
    if args.density:
        grid, values = curvature.spectral_density(op, key=key, num_steps=args.num_steps,
                                                  num_probes=args.num_probes)
        out["density"] = {"grid": [float(g) for g in grid], "values": [float(v) for v in values]}
        progress.advance(task)
    if args.trace:
        out["trace"] = float(curvature.trace(op, key=key, num_matvecs=max(args.num_matvecs, 3)))
        progress.advance(task)
    return out


def write_figures(result, out_dir: Path, kind: str) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    vals = result["top_eigenvalues"]
    ax.plot(range(1, len(vals) + 1), vals, "o-")
    ax.set(xlabel="index i", ylabel="eigenvalue", title=f"top {len(vals)} {kind} eigenvalues")
    written.append(_save(fig, out_dir / "top_eigenvalues.png"))
    if "density" in result:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        _density(ax, result["density"], "all")
        for v in vals:
            ax.axvline(v, color="k", lw=0.4, alpha=0.4)
        ax.set(title=f"{kind} spectral density (SLQ)")
        written.append(_save(fig, out_dir / "density.png"))
        if "blocks" in result:
            fig, ax = plt.subplots(figsize=(7, 4))
            for name, block in result["blocks"].items():
                _density(ax, block["density"], name)
            ax.legend(fontsize=6, ncol=2)
            ax.set(title=f"per-block {kind} spectral densities")
            written.append(_save(fig, out_dir / "blocks_density.png"))
    return written


def _density(ax, density, label):
    import numpy as np

    values = np.maximum(np.asarray(density["values"]), 1e-12)  # log scale needs > 0
    ax.semilogy(density["grid"], values, lw=0.8, label=label)
    ax.set(xlabel="eigenvalue", ylabel="density", ylim=(1e-6, None))


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name
