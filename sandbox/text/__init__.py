"""Discrete maths of text: corpora, byte-level BPE, Markov sources, regex automata, segmentations.

    from sandbox import text
    tok = text.bpe.train(text.corpus.load_text("pydoc"), vocab_size=512, pattern="gpt4")
    tok = text.adapters.load_tokenizer(path)      # sandbox JSON, HF tokenizer.json, .tiktoken or .gguf
    ids = tok.encode("def f(x):")                               # lowest-rank merge first, as tiktoken
    index = text.constrained.regex_index(r"\\d{4}", tok)         # the pattern's automaton over tokens
    text.segmentations.count_segmentations(b"tokenization", table)  # every way to spell it in tokens

Submodules load on first use.
"""

from sandbox import lazy

__all__ = ["adapters", "bpe", "bpe_encode", "bpe_gguf", "bpe_hf", "bpe_inspect", "bpe_train", "constrained", "corpus",
           "data", "markov", "pretokenize", "regex_dfa", "segmentations", "tokenizer", "utf8_ranges"]
__getattr__ = lazy.submodules(__name__, __all__)
