"""Export to Hugging Face `tokenizers`: the same ids, split pattern, merges and special tokens.

GPT-2's pattern is HF's `ByteLevel` pre-tokenizer itself; SmolLM2's is HF's own form of it,
`Digits(individual_digits=True)` then `ByteLevel`; any other pattern is a `Split` (isolating
each match) followed by `ByteLevel` without its own regex. A tiktoken-rule tokenizer sets
`ignore_merges=True`, which makes HF look a whole piece up in the vocabulary first, as tiktoken
does; a merge-list tokenizer keeps its own `whole_pieces`.
"""

from sandbox.text.pretokenize import bytes_to_chars, pattern_string


def hf_pre_tokenizer(pattern: str):
    """The HF pre-tokenizer that splits like `pretokenize.split(text, pattern)`, byte-level spelled."""
    from tokenizers import Regex, pre_tokenizers

    if pattern == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pattern == "smollm":
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern_string(pattern)), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def hf_tokenizer(tok):
    """A `tokenizers.Tokenizer` equivalent to the sandbox tokenizer `tok`."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    special = {i: s for s, i in tok.special_tokens.items()}
    spell = [special[i] if i in special else bytes_to_chars(tok.vocab[i]) for i in range(tok.vocab_size)]
    model = models.BPE(
        vocab={s: i for i, s in enumerate(spell)},
        merges=[(spell[a], spell[b]) for a, b in tok.merges],
        ignore_merges=tok.whole_pieces,
    )
    hf = Tokenizer(model)
    hf.pre_tokenizer = hf_pre_tokenizer(tok.pattern)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in tok.special_tokens])
    return hf

