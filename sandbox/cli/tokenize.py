"""`sandbox tokenize`: train a byte-level BPE tokenizer, encode with it, explain a word, measure it.

FILE is a sandbox tokenizer, an HF `tokenizer.json` (byte-level BPE), a tiktoken `.tiktoken`
file (split pattern "gpt2" for r50k_base/p50k_base, else "gpt4") or a GGUF model file.

    sandbox tokenize train PATH_OR_CORPUS --vocab-size N [--pattern gpt2|gpt4|smollm] --out FILE [--force]
    sandbox tokenize encode FILE TEXT [--allow-special]
    sandbox tokenize explain FILE WORD
    sandbox tokenize stats FILE PATH_OR_CORPUS
    sandbox tokenize count FILE TEXT [--run RUN_DIR] [--corpus PATH_OR_CORPUS --out DIR [--force]]
"""

import time
from pathlib import Path

from sandbox.cli import argtypes
from sandbox.errors import SandboxError

PATTERNS = ["gpt2", "gpt4", "smollm"]  # pretokenize.PATTERNS, not imported: the CLI starts without numpy


def add_parser(subparsers):
    p = subparsers.add_parser("tokenize", help="train, apply and inspect byte-level BPE tokenizers")
    actions = p.add_subparsers(dest="action", required=True)
    t = actions.add_parser("train", help="learn a BPE tokenizer on a corpus and save it as JSON")
    t.add_argument("corpus", metavar="PATH_OR_CORPUS", type=argtypes.regular_file,
                   help="embedded corpus name (pydoc) or a UTF-8 file/folder")
    t.add_argument("--vocab-size", type=argtypes.count(1, 2**24), required=True,
                   help="number of token ids, special tokens included")
    t.add_argument("--pattern", choices=PATTERNS, default="gpt4", help="split pattern (default gpt4)")
    t.add_argument("--out", required=True, help="tokenizer file to write")
    t.add_argument("--force", action="store_true", help="replace --out if it is a tokenizer file the sandbox made")
    e = actions.add_parser("encode", help="print the token ids and tokens of a text")
    e.add_argument("file", metavar="FILE", type=argtypes.regular_file,
                   help="sandbox tokenizer, HF tokenizer.json, .tiktoken or .gguf file")
    e.add_argument("text", metavar="TEXT", type=argtypes.utf8_text)
    e.add_argument("--allow-special", action="store_true", help="encode special tokens in TEXT as special tokens")
    x = actions.add_parser("explain", help="show the merges that encode a word, step by step")
    x.add_argument("file", metavar="FILE", type=argtypes.regular_file)
    x.add_argument("word", metavar="WORD", type=argtypes.utf8_text)
    s = actions.add_parser("stats", help="bytes per token, unigram entropy and Zipf slope on a corpus")
    s.add_argument("file", metavar="FILE", type=argtypes.regular_file)
    s.add_argument("corpus", metavar="PATH_OR_CORPUS", type=argtypes.regular_file)
    c = actions.add_parser("count", help="count the ways TEXT splits into tokens; LM probability of each (--run)")
    c.add_argument("file", metavar="FILE", type=argtypes.regular_file)
    c.add_argument("text", metavar="TEXT", type=argtypes.utf8_text)
    c.add_argument("--run", default=None, help="a run trained with this tokenizer: score every segmentation")
    c.add_argument("--corpus", default=None, type=argtypes.regular_file,
                   help="also plot the counts over the corpus's words into --out")
    c.add_argument("--out", default=None, help="folder for the --corpus figure")
    c.add_argument("--force", action="store_true", help="replace --out if the sandbox made it")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox.text import bpe
    from sandbox.text.adapters import load_tokenizer

    if args.action == "train":
        return _train(args, bpe)
    tok = load_tokenizer(args.file)
    if args.action == "encode":
        ids = tok.encode(args.text, allowed_special="all" if args.allow_special else frozenset())
        print("ids:", " ".join(map(str, ids)))
        print("tokens:", " ".join(_show(tok.decode_bytes([i])) for i in ids))
        print(f"{len(ids)} tokens for {len(args.text.encode('utf-8'))} bytes")
    elif args.action == "count":
        _count(args, tok)
    elif args.action == "explain":
        _explain(tok, args.word)
    else:
        from sandbox.text.bpe_inspect import stats
        from sandbox.text.corpus import load_text

        st = stats(tok, load_text(args.corpus))
        for k, v in st.items():
            print(f"{k:22s} {v:.4f}" if isinstance(v, float) else f"{k:22s} {v}")
    return 0


def _train(args, bpe) -> int:
    from sandbox import rundir
    from sandbox.text.corpus import load_text

    out = rundir.output_file(Path(args.out), args.force, _is_tokenizer(bpe), inputs=[args.corpus])
    text = load_text(args.corpus)
    t0 = time.perf_counter()
    tok = bpe.train(text, args.vocab_size, pattern=args.pattern)
    seconds = time.perf_counter() - t0
    tok.save(out, overwrite=args.force)
    print(
        f"trained {tok.vocab_size} tokens ({len(tok.merges)} merges, pattern {tok.pattern}) on "
        f"{len(text.encode('utf-8'))} bytes in {seconds:.2f} s -> {out}"
    )
    return 0


def _is_tokenizer(bpe):
    def made_by_sandbox(path: Path) -> bool:
        try:
            bpe.load(path)
            return True
        except SandboxError:
            return False

    return made_by_sandbox


def _explain(tok, word: str) -> None:
    for piece in tok.explain(word):
        print(f"piece {piece['piece']!r} ({len(piece['piece'].encode('utf-8'))} bytes)")
        for k, st in enumerate(piece["steps"], 1):
            parts = " ".join(_show(p) for p in st["parts"])
            print(f"  {k:3d}. {_show(st['left'])} + {_show(st['right'])} -> id {st['token']}   {parts}")
        if piece["whole_piece"]:
            print("  the whole piece is a token: looked up directly")
        print("  ids:", " ".join(map(str, piece["ids"])))


def _show(data: bytes) -> str:
    """A token's bytes as a quoted string; bytes that are not UTF-8 shown as \\xNN."""
    return repr(data.decode("utf-8", errors="backslashreplace"))


def _count(args, tok) -> None:
    from sandbox.analysis.segmentations import count_report, write_word_figure

    if args.corpus and not args.out:
        raise SandboxError("--corpus needs --out, the folder to write the figure into")
    rep = count_report(tok, args.text, args.run)
    print(f"{argtypes.exact(rep['count'])} segmentations of {rep['bytes']} bytes; "
          f"canonical ({len(rep['canonical'])} tokens): "
          + " ".join(_show(t) for t in rep["canonical"]))
    if "lm" in rep:
        lm = rep["lm"]
        for k in sorted(range(len(lm["logprobs"])), key=lambda k: -lm["logprobs"][k])[:20]:
            mark = "  <- canonical" if k == lm["canonical_index"] else ""
            print(f"  log p = {lm['logprobs'][k]:9.3f}  " + " ".join(_show(tok.decode_bytes([i]))
                                                             for i in lm["segmentations"][k]) + mark)
        print(f"canonical share of p(text): {lm['canonical_share']:.1%}")
    if args.corpus:
        fig = write_word_figure(tok, args.corpus, args.out, args.force)
        print(f"{fig['words']} words, median {fig['median']:.0f} segmentations, most {fig['most'][0]!r} "
              f"({fig['most'][1]}) -> {args.out}/segmentations.png")
