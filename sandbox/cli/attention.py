"""`sandbox attention RUN --text TEXT`: attention of every layer and head as graphs, with figures."""


from sandbox.cli import argtypes


def add_parser(subparsers):
    p = subparsers.add_parser("attention", help="attention entropy, Markov chains, rollout and flow of a text")
    p.add_argument("run_dir", metavar="RUN", help="a run folder made by `sandbox train`, or `minilm`")
    p.add_argument("--text", required=True, type=argtypes.utf8_text, help="the text to attend over (cut to 24 tokens)")
    p.add_argument("--out", default=None, help="output folder (default RUN/attention-<timestamp>; needed for minilm)")
    p.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import rundir
    from sandbox.analysis.attention.report import attention_report
    from sandbox.errors import SandboxError

    if args.out is None and args.run_dir == "minilm":
        raise SandboxError("give --out for minilm: it has no run folder to write into")
    out = args.out or rundir.new_child(args.run_dir, "attention")
    s = attention_report(args.run_dir, args.text, out, args.force)
    print(f"{s['layers']} layers x {s['heads']} heads over {len(s['tokens'])} tokens -> {out}")
    for l, row in enumerate(s["entropy"]):
        print(f"layer {l}: entropy (nats) " + " ".join(f"{h:.2f}" for h in row)
              + "   token-0 mass " + " ".join(f"{m:.2f}" for m in s["first_token_mass"][l]))
    return 0
