"""`sandbox sample RUN_DIR --prompt TEXT`: generate text from a run's checkpoint.

The prompt and the continuation are printed under their own headings; control characters a
byte-level model may produce are shown as escapes (\\x00), never written raw to the terminal.
"""

import math

from sandbox.cli import argtypes

MAX_NEW_TOKENS = 100_000  # one model call per token (no KV cache): beyond this a request is hours, not minutes


def add_parser(subparsers):
    p = subparsers.add_parser("sample", help="generate text from a trained run")
    p.add_argument("run_dir", help="a run folder made by `sandbox train`")
    p.add_argument("--prompt", required=True, type=argtypes.utf8_text, help="text to continue")
    p.add_argument("--num-tokens", type=argtypes.count(1, MAX_NEW_TOKENS), default=200,
                   help=f"how many tokens to generate (default 200, at most {MAX_NEW_TOKENS:,})")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 is greedy")
    p.add_argument("--top-k", type=argtypes.count(1, 2**31 - 1), default=None,
                   help="keep only the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus: keep the smallest set with mass >= p")
    p.add_argument("--seed", type=argtypes.SEED, default=0, help="sampling seed")
    p.add_argument("--step", type=argtypes.STEP, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--entropy", action="store_true", help="also print each token's predictive entropy (nats)")
    p.add_argument("--regex", default=None, metavar="PATTERN", type=argtypes.utf8_text,
                   help="generate only text matching PATTERN in full")
    p.add_argument("-n", type=argtypes.count(1, 10_000), default=None,
                   help="with --regex: number of samples (default 8)")
    p.add_argument("--canonical-only", action="store_true", help="with --regex: only canonical token sequences")
    p.set_defaults(func=run)


def _check(args):
    from sandbox.errors import SandboxError

    if args.num_tokens <= 0:
        raise SandboxError(f"--num-tokens must be positive, got {args.num_tokens}")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise SandboxError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k is not None and args.top_k <= 0:
        raise SandboxError(f"--top-k must be positive, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise SandboxError(f"--top-p must lie in (0, 1], got {args.top_p}")
    if not args.prompt:
        raise SandboxError("--prompt must not be empty")
    if args.regex is None and (args.n is not None or args.canonical_only):
        raise SandboxError(f"{'-n' if args.n is not None else '--canonical-only'} goes with --regex PATTERN "
                           "(without it, one sample is drawn)")


def run(args) -> int:
    import jax
    import jax.numpy as jnp

    from sandbox.errors import SandboxError
    from sandbox.sampling import generate
    from sandbox.text.tokenizer import run_tokenizer
    from sandbox.train.checkpoint import load_run

    _check(args)
    if args.regex is not None:
        return _regex(args)
    cfg, params, step = load_run(args.run_dir, args.step)
    tok = run_tokenizer(cfg.data, args.run_dir)
    prompt = tok.encode(args.prompt)
    if not prompt or min(prompt) < 0 or max(prompt) >= cfg.model.vocab_size:
        raise SandboxError(f"the prompt holds symbols outside this run's vocabulary of {cfg.model.vocab_size}")
    if args.top_k is not None and args.top_k > cfg.model.vocab_size:
        raise SandboxError(f"--top-k {args.top_k} exceeds the vocabulary size {cfg.model.vocab_size}")
    given, prompt = len(prompt), prompt[-cfg.model.seq_len:]
    tokens, entropies = generate(params, cfg.model, jnp.asarray([prompt], jnp.int32), args.num_tokens,
                                 jax.random.PRNGKey(args.seed), args.temperature, args.top_k, args.top_p)
    new = [int(t) for t in tokens[0, len(prompt):]]
    cut = f", the last of {given}: the model's context is {cfg.model.seq_len}" if given > len(prompt) else ""
    print(f"--- prompt ({len(prompt)} tokens{cut}) ---")
    print(_visible(tok.decode(prompt)))
    print(f"--- continuation ({len(new)} tokens, checkpoint step {step}, temperature {args.temperature:g}) ---")
    print(_visible(tok.decode(new)))
    if args.entropy:
        print(f"\nper-token predictive entropy (nats), checkpoint step {step}:")
        for t, h in zip(new, entropies[0].tolist()):
            print(f"{tok.decode([t])!r:>10}  {h:.3f}")
        print(f"mean {float(entropies.mean()):.3f} nats/token")
    return 0


def _regex(args) -> int:
    from sandbox.regex_sampling import sample_run

    n = 8 if args.n is None else args.n
    out = sample_run(args.run_dir, args.regex, args.prompt, n, args.num_tokens, args.seed, args.temperature,
                     args.top_k, args.top_p, args.canonical_only, args.step)
    for text, ok, canon in zip(out["texts"], out["matched"], out["canonical"]):
        print(f"{'match' if ok else 'NO MATCH'}  {'canonical' if canon else 'non-canonical'}  {text!r}")
    print(f"{sum(out['matched'])}/{len(out['texts'])} match in full; canonical token sequences: "
          f"{out['canonical_fraction']:.0%} (automaton: {out['index_states']} states)")
    return 0


def _visible(text: str) -> str:
    """`text` with control characters other than newline and tab escaped (\\x00, \\x1b, ...)."""
    return "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)
