"""`sandbox spectra RUN_DIR|minilm --out DIR`: per-layer weight spectra, power-law alpha, MP comparison."""

from pathlib import Path


def add_parser(subparsers):
    p = subparsers.add_parser("spectra", help="per-layer weight spectra (ESD, power-law alpha, stable rank) of a run or MiniLM")
    p.add_argument("target", help="a run folder, or 'minilm' for the pretrained all-MiniLM-L6-v2")
    p.add_argument("--step", type=int, help="run: checkpoint step (default: latest)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/spectra, or spectra-minilm)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists and is not empty")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox.cli.compress import load_params
    from sandbox.compress import report
    from sandbox.train import records

    title, params = load_params(args.target, args.step)
    default = Path("spectra-minilm") if args.target == "minilm" else Path(args.target) / "spectra"
    out = records.prepare_new_dir(Path(args.out) if args.out else default, args.force)
    table = report.spectra_table(params)
    names = report.write_spectra_figures(params, table, out, title)
    records.write_json(out / "spectra.json", {"target": title, "layers": table, "figures": names})
    print(f"{'layer':28s} {'shape':>11s} {'alpha':>6s} {'stable rank':>11s} {'||W||_2':>8s} {'>MP edge':>8s}")
    for name, row in table.items():
        shape = "x".join(map(str, row["shape"]))
        print(f"{name:28s} {shape:>11s} {row['alpha']:6.2f} {row['stable_rank']:11.2f} "
              f"{row['spectral_norm']:8.3f} {row['n_above_mp']:8d}")
    print(f"wrote {out / 'spectra.json'} and {', '.join(names)}")
    return 0
