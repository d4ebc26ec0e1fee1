"""`sandbox sample RUN_DIR --prompt TEXT`: generate text from a run's checkpoint.

The prompt and the continuation are printed under their own headings; control characters a
byte-level model may produce are shown as escapes (\\x00), never written raw to the terminal, and
long runs of spaces as `<N spaces>`.
"""

import re

from sandbox.cli import argtypes
from sandbox.errors import SandboxError

MAX_NEW_TOKENS = 100_000  # one model call per token: beyond this a request is hours, not minutes


def add_parser(subparsers):
    p = subparsers.add_parser("sample", help="generate text from a trained run")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--prompt", required=True, type=argtypes.utf8_text, help="text to continue")
    p.add_argument("--num-tokens", type=argtypes.count(1, MAX_NEW_TOKENS), default=200,
                   help=f"how many tokens to generate (default 200, at most {MAX_NEW_TOKENS:,})")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 is greedy")
    p.add_argument("--top-k", type=argtypes.SIZE, default=None, help="keep only the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus: keep the smallest set with mass >= p")
    p.add_argument("--seed", type=argtypes.SEED, default=0, help="sampling seed")
    p.add_argument("--step", type=argtypes.STEP, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--entropy", action="store_true", help="also print each token's predictive entropy (nats)")
    p.add_argument("--regex", default=None, metavar="PATTERN", type=argtypes.utf8_text,
                   help="generate only text matching PATTERN in full")
    p.add_argument("-n", type=argtypes.count(1, 10_000), default=None,
                   help="number of samples (default 1; 8 with --regex)")
    p.add_argument("--canonical-only", action="store_true", help="with --regex: only canonical token sequences")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox import analysis
    from sandbox.analysis import sample
    from sandbox.sampling import SamplingOptions

    options = SamplingOptions(args.temperature, args.top_k, args.top_p)
    if not args.prompt:
        raise SandboxError("--prompt must not be empty")
    if args.entropy and args.regex is not None:
        raise SandboxError("--entropy is for plain sampling; it is not measured with --regex")
    if args.canonical_only and args.regex is None:
        raise SandboxError("--canonical-only goes with --regex PATTERN (it keeps only canonical token sequences "
                           "of a regex's matches)")
    run = analysis.load(args.run_dir, args.step)
    n = args.n if args.n is not None else (8 if args.regex is not None else 1)
    out = sample.of_run(run, args.prompt, args.num_tokens, options, args.seed, n, args.regex, args.canonical_only)
    cut = f"; its first {out['cut']} tokens cut to fit the context of {run.cfg.model.seq_len}" if out["cut"] else ""
    print(f"--- prompt ({len(out['prompt_ids'])} tokens{cut}) ---")
    print(visible(run.tokenizer.decode(out["prompt_ids"])))
    if args.regex is not None:
        print(f"--- {n} samples matching {args.regex!r} (checkpoint step {run.step}, "
              f"temperature {args.temperature:g}) ---")
        for text, ok, canon in zip(out["texts"], out["matched"], out["canonical"]):
            print(f"{'match' if ok else 'NO MATCH'}  {'canonical' if canon else 'non-canonical'}  {text!r}")
        print(f"{sum(out['matched'])}/{len(out['texts'])} match in full; canonical token sequences: "
              f"{out['canonical_fraction']:.0%} (automaton: {out['index_states']} states)")
        return 0
    for i, (text, ids, ents) in enumerate(zip(out["texts"], out["ids"], out["entropies"])):
        print(f"--- continuation{f' {i + 1}/{n}' if n > 1 else ''} ({len(ids)} tokens, checkpoint step {run.step}, "
              f"temperature {args.temperature:g}) ---")
        print(visible(text))
        if args.entropy:
            print(f"\nper-token predictive entropy (nats), checkpoint step {run.step}:")
            for t, h in zip(ids, ents):
                print(f"{run.tokenizer.decode([t])!r:>10}  {h:.3f}")
            print(f"mean {sum(ents) / len(ents):.3f} nats/token")
    return 0


def visible(text: str) -> str:
    """`text` with control characters other than newline and tab escaped (\\x00, \\x1b, ...), and each run of 8 or
    more spaces shown as `<N spaces>` (a byte-level model trained on indented docs emits long runs that would
    otherwise print as a blank screen)."""
    shown = "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)
    return re.sub(r" {8,}", lambda m: f"<{len(m.group())} spaces>", shown)
