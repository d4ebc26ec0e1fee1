"""Byte-level BPE, side by side in one run, single thread, on ~1 MB of real English text:

- training to vocab 4096: sandbox vs Hugging Face `tokenizers` (target <= HF's time), and
  vs a naive trainer that recounts every pair before each merge (target >= 50x faster;
  timed over its first merges and extrapolated linearly, which slightly overstates it since
  pieces shrink as merges go on);
- encoding throughput in tokens/s: sandbox vs tiktoken and HF `tokenizers` built from the same
  ranks, cold (a fresh tokenizer, empty piece cache; target >= 1/2 of tiktoken's) and warm
  (second pass);
- one 100k-character piece (no quadratic blow-up);
- with --against TREE (another checkout, e.g. `git -C /work/main archive main | tar -x -C /tmp/old`):
  that tree's encoder too, timed in the same loop as this one's, for before/after figures.

Text: the embedded pydoc corpus plus the docstrings of the Python standard library's own
source files (read with `ast`, nothing imported), cut at 1,000,000 characters.
Run: python benchmarks/tokenizer.py [--naive-merges 200] [--against TREE]
"""

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # HF tokenizers and tiktoken: one thread
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import ast  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

from sandbox.text import bpe  # noqa: E402
from sandbox.text.bpe_train import BYTE_ID, count_pieces  # noqa: E402
from sandbox.text.corpus import load_text  # noqa: E402
from sandbox.text.pretokenize import bytes_to_chars  # noqa: E402

N_CHARS = 1_000_000
VOCAB = 4096


def benchmark_text() -> str:
    """pydoc, then stdlib docstrings in sorted file order, to N_CHARS characters."""
    parts = [load_text("pydoc")]
    n = len(parts[0])
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if n >= N_CHARS or "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(doc)
                    n += len(doc) + 2
    return "\n\n".join(parts)[:N_CHARS]


def best_of(repeats, fn):
    """(smallest CPU time of this process, result) over `repeats` calls. CPU time, not wall
    time, so that other jobs on a shared machine do not skew one side; every peer runs on one
    thread, so its CPU time is its wall time on an idle machine."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def hf_train(text: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from sandbox.text.bpe_hf import hf_pre_tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = hf_pre_tokenizer("gpt4")
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=0,
        show_progress=False,
        special_tokens=[bpe.ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([text], trainer)
    return tok


def naive_merges(text: str, n_merges: int) -> list[tuple[int, int]]:
    """The textbook trainer: before every merge, count all pairs over the unique pieces."""
    words = [(tuple(BYTE_ID[b] for b in p.encode()), c) for p, c in count_pieces(text, "gpt4").items()]
    merges, new = [], 256
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words:
            for pair in zip(w, w[1:]):
                pairs[pair] += c
        a, b = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, then smallest ids (as HF)
        merges.append((a, b))
        for k, (w, c) in enumerate(words):
            if len(w) > 1:
                out, i = [], 0
                while i < len(w):
                    if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                        out.append(new)
                        i += 2
                    else:
                        out.append(w[i])
                        i += 1
                words[k] = (tuple(out), c)
        new += 1
    return merges


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-merges", type=int, default=200, help="merges to time the naive trainer over")
    parser.add_argument("--against", type=Path, help="another checkout whose encoder to time beside this one's")
    args = parser.parse_args()
    if args.against and not (args.against / "sandbox/text/bpe.py").is_file():
        parser.error(f"--against {args.against}: no sandbox/text/bpe.py there; give the root of a checkout")
    against = load_bpe(args.against) if args.against else None
    load_start = os.getloadavg()
    text = benchmark_text()
    mb = len(text.encode()) / 1e6
    print(
        f"text: {len(text):,} characters, {mb:.2f} MB UTF-8 (pydoc + stdlib docstrings); vocab {VOCAB}, pattern gpt4\n"
    )
    rows = []

    t_ours, tok = best_of(2, lambda: bpe.train(text, VOCAB, pattern="gpt4"))
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        print("HF tokenizers not installed: pip install tokenizers for the training comparison")
    else:
        t_hf, hf = best_of(2, lambda: hf_train(text))
        # HF puts the special token first (id 0), the sandbox last: compare the rest in order
        same = [hf.id_to_token(i) for i in range(1, VOCAB)] == [bytes_to_chars(t) for t in tok.vocab]
        rows.append(
            (
                "train to 4096 vs HF tokenizers",
                t_ours,
                t_hf,
                t_hf / t_ours,
                ">= 1",
                f"same vocab: {same and hf.get_vocab_size() == VOCAB}",
            )
        )

    k = args.naive_merges
    t_k, naive = best_of(1, lambda: naive_merges(text, k))
    t_naive = t_k * len(tok.merges) / k
    rows.append(
        (
            f"train vs naive (x{len(tok.merges) / k:.1f} of {k} merges)",
            t_ours,
            t_naive,
            t_naive / t_ours,
            ">= 50",
            f"first {k} merges agree: {naive == tok.merges[:k]}",
        )
    )

    rows += encode_rows(tok, text, against)
    print(
        f"{'measure (CPU seconds or k tokens/s)':48s} {'sandbox':>9s} {'peer':>9s} {'ratio':>7s} {'target':>8s}  check"
    )
    for name, ours, peer, ratio, target, check in rows:
        print(f"{name:48s} {ours:9.3f} {peer:9.3f} {ratio:7.2f} {target:>8s}  {check}")
    print("\nratio = peer / sandbox for times (higher is better for the sandbox), sandbox / peer for tokens/s")
    print(f"load average (1, 5, 15 min) at the start {load_start}, at the end {os.getloadavg()}")


def load_bpe(tree: Path):
    """The `sandbox.text.bpe` module of another checkout, imported beside this one's (its
    `sandbox` modules are set aside meanwhile, so each tree's functions keep their own)."""
    mine = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "sandbox" or k.startswith("sandbox.")}
    sys.path.insert(0, str(tree.resolve()))
    try:
        module = importlib.import_module("sandbox.text.bpe")
    finally:
        sys.path.remove(str(tree.resolve()))
        for k in [k for k in sys.modules if k == "sandbox" or k.startswith("sandbox.")]:
            del sys.modules[k]
        sys.modules.update(mine)
    assert Path(module.__file__).resolve().is_relative_to(tree.resolve())
    return module


def interleaved(repeats: int, fns: dict) -> dict:
    """name -> (smallest CPU time, last result) of each function, called in turn `repeats` times
    (so that a change in the machine's load hits every side alike)."""
    best = {name: (float("inf"), None) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            out = fn()
            best[name] = (min(best[name][0], time.process_time() - t0), out)
    return best


def encode_rows(tok, text: str, against=None) -> list[tuple]:
    """Encoding k tokens/s: the sandbox cold (a fresh tokenizer, empty piece cache) and warm (its
    second pass) vs tiktoken (no piece cache) and HF tokenizers (fresh, and warm: its word cache),
    all from the same ranks; the same for the --against tree's sandbox; and one long piece."""
    trees = {"sandbox": bpe} | ({"against": against} if against else {})
    fns = {}
    try:
        enc = tok.to_tiktoken()
        fns["tiktoken"] = lambda: enc.encode_ordinary(text)
    except ImportError:
        enc = None
        print("tiktoken not installed: pip install tiktoken for the encoding comparison")
    for name, module in trees.items():
        fresh = [module.from_dict(tok.to_dict()) for _ in range(5)]  # each with an empty piece cache
        warm = module.from_dict(tok.to_dict())
        warm.encode_ordinary(text)  # fills its cache
        fns[f"{name} cold"] = lambda fresh=fresh: fresh.pop().encode_ordinary(text)
        fns[f"{name} warm"] = lambda warm=warm: warm.encode_ordinary(text)
    t = interleaved(5, fns)
    t_cold, ids = t["sandbox cold"]
    k = len(ids) / 1e3
    rows = []
    if enc is not None:
        t_tik, tik_ids = t["tiktoken"]
        for name in trees:
            label = "" if name == "sandbox" else " (--against)"
            for kind, target in (("cold", ">= 0.5"), ("warm", "")):
                secs, out = t[f"{name} {kind}"]
                rows.append(
                    (
                        f"encode k tokens/s, {kind} vs tiktoken{label}",
                        k / secs,
                        k / t_tik,
                        t_tik / secs,
                        target,
                        f"identical ids: {out == tik_ids}",
                    )
                )
        long_piece = "".join("etaoinshrdlu"[(i * i + 7 * i) % 12] for i in range(100_000))
        fresh_long = bpe.from_dict(tok.to_dict())  # empty piece cache
        t_long, long_ids = best_of(1, lambda: fresh_long.encode_ordinary(long_piece))
        t_tik_long, tik_long = best_of(1, lambda: enc.encode_ordinary(long_piece))
        rows.append(
            (
                "one 100k-char piece, s vs tiktoken",
                t_long,
                t_tik_long,
                t_tik_long / t_long,
                "< 1 s",
                f"identical ids: {long_ids == tik_long}",
            )
        )
    if against:
        for kind in ("cold", "warm"):
            (ours, ids_ours), (theirs, ids_theirs) = t[f"sandbox {kind}"], t[f"against {kind}"]
            rows.append(
                (
                    f"encode k tokens/s, {kind} vs --against tree",
                    k / ours,
                    k / theirs,
                    theirs / ours,
                    "",
                    f"identical ids: {ids_ours == ids_theirs}",
                )
            )
    t_warm = t["sandbox warm"][0]
    try:
        from sandbox.text.bpe_hf import hf_tokenizer

        hf_fresh = [hf_tokenizer(tok) for _ in range(5)]
    except ImportError:
        print("HF tokenizers not installed: pip install tokenizers for the encoding comparison")
    else:
        t_hf_cold, hf_ids = best_of(5, lambda: hf_fresh.pop().encode(text, add_special_tokens=False).ids)
        hf_warm = hf_tokenizer(tok)
        t_hf_warm, _ = best_of(5, lambda: hf_warm.encode(text, add_special_tokens=False).ids)
        same = f"identical ids: {ids == hf_ids}"
        rows.append(("encode k tokens/s, cold vs HF (fresh)", k / t_cold, k / t_hf_cold, t_hf_cold / t_cold, "", same))
        rows.append(("encode k tokens/s, warm vs HF (warm)", k / t_warm, k / t_hf_warm, t_hf_warm / t_warm, "", same))
    return rows


if __name__ == "__main__":
    main()
