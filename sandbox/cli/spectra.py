"""`sandbox spectra RUN_DIR|minilm [--out DIR]`: per-layer weight spectra, power-law alpha, MP comparison.

OUT defaults to a new RUN_DIR/spectra-<timestamp> (spectra-minilm-<timestamp> for MiniLM).
"""

from pathlib import Path

from sandbox.cli import argtypes


def add_parser(subparsers):
    p = subparsers.add_parser("spectra", help="per-layer weight spectra (ESD, power-law alpha, stable rank) "
                                              "of a run or MiniLM")
    p.add_argument("target", help="a run folder, or 'minilm' for the pretrained all-MiniLM-L6-v2")
    p.add_argument("--step", type=argtypes.STEP, help="run: checkpoint step (default: latest)")
    p.add_argument("--out", help="output folder (default: a new RUN_DIR/spectra-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import rundir
    from sandbox.analysis import spectra
    from sandbox.train import records

    if args.target == "minilm":
        from sandbox.pretrained import minilm

        title, params, groups = "all-MiniLM-L6-v2", minilm.load().params, None
        out = Path(args.out) if args.out else rundir.new_child(Path("."), "spectra-minilm")
        inputs = []
    else:
        from sandbox import analysis

        run = analysis.load(args.target, args.step)  # the weights alone: no data is read
        title, params, groups, inputs = run.name, run.params, run.groups(), [args.target]
        out = Path(args.out) if args.out else rundir.new_child(Path(args.target), "spectra")
    with rundir.claim(out, "spectra", args.force, inputs=inputs):
        table, figures = spectra.of_params(params, out, title, groups)
        records.write_json(out / "spectra.json", {"target": title, "layers": table, "figures": figures})
    print(f"{'layer':28s} {'shape':>11s} {'alpha':>6s} {'stable rank':>11s} {'||W||_2':>8s} {'>MP edge':>8s}")
    for name, row in table.items():
        shape = "x".join(map(str, row["shape"]))
        print(f"{name:28s} {shape:>11s} {row['alpha']:6.2f} {row['stable_rank']:11.2f} "
              f"{row['spectral_norm']:8.3f} {row['n_above_mp']:8d}")
    print(f"wrote {out / 'spectra.json'} and {', '.join(figures)}")
    return 0

