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
    print(f"{'layer':28s} {'shape':>11s} {'alpha ± se':>12s} {'KS D':>6s} {'tail n':>6s} {'stable rank':>11s} "
          f"{'||W||_2':>8s} {'>MP edge':>8s}  fit flags")
    for name, row in table.items():
        shape = "x".join(map(str, row["shape"]))
        print(f"{name:28s} {shape:>11s} {row['alpha']:6.2f} ± {row['alpha_se']:4.2f} {row['ks']:6.3f} "
              f"{row['n_tail']:6d} {row['stable_rank']:11.2f} {row['spectral_norm']:8.3f} {row['n_above_mp']:8d}  "
              + ("; ".join(row["fit_flags"]) or "-"))
    flagged = [name for name, row in table.items() if row["fit_flags"]]
    if flagged:
        print(f"{len(flagged)} of {len(table)} fits are flagged: read their alpha with the flag (a short tail, a "
              "poor KS fit or alpha outside 2..6, where the 'well-trained' reading does not apply)")
    print(f"wrote {out / 'spectra.json'} and {', '.join(figures)}")
    return 0

