"""Token streams, the train/val split, and batches drawn from an explicit key.

A corpus becomes one stream of token ids. The split is contiguous: the first
(1 - val_fraction) of the text trains, the rest validates, so no window of the val split
overlaps the train split. A batch is B windows of L + 1 tokens starting at offsets drawn
uniformly from the split with `jax.random`; inputs are the first L, targets the last L.
"""

from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError
from sandbox.text import corpus as corpus_lib
from sandbox.text import markov
from sandbox.text.markov import MarkovConfig
from sandbox.text.tokenizer import TokenizerConfig, make_tokenizer


@dataclass
class DataConfig:
    corpus: str = "pydoc"  # "pydoc", "markov", or a path to a UTF-8 file or folder
    val_fraction: float = 0.1
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    markov: MarkovConfig = field(default_factory=MarkovConfig)

    def __post_init__(self):
        if not 0.0 < self.val_fraction < 1.0:
            raise SandboxError(f"data.val_fraction must lie in (0, 1), got {self.val_fraction}")


@dataclass
class Dataset:
    train_N: np.ndarray  # int32 token ids of the train split
    val_N: np.ndarray
    tokenizer: object  # encode(text) -> ids, decode(ids) -> text, vocab_size
    entropy_rate: float | None = None  # exact, for synthetic sources


def load_dataset(cfg: DataConfig, seq_len: int, run_dir: Path | None = None) -> Dataset:
    """Read the corpus, split it, and tokenize it (training a tokenizer on the train split only)."""
    if cfg.corpus == "markov":
        ids = markov.sample(cfg.markov)
        cut = int(len(ids) * (1 - cfg.val_fraction))
        tok = make_tokenizer(cfg.tokenizer, train_text=None, run_dir=run_dir, alphabet=cfg.markov.alphabet)
        data = Dataset(ids[:cut], ids[cut:], tok, markov.entropy_rate(cfg.markov))
    else:
        text = corpus_lib.load_text(cfg.corpus)
        cut = int(len(text) * (1 - cfg.val_fraction))
        tok = make_tokenizer(cfg.tokenizer, train_text=text[:cut], run_dir=run_dir)
        encode = lambda s: np.asarray(tok.encode(s), dtype=np.int32)  # noqa: E731
        data = Dataset(encode(text[:cut]), encode(text[cut:]), tok)
    for split, ids in (("train", data.train_N), ("val", data.val_N)):
        if len(ids) < seq_len + 2:
            raise SandboxError(
                f"the {split} split of corpus {cfg.corpus!r} has {len(ids)} tokens, fewer than "
                f"model.seq_len + 2 = {seq_len + 2}: use a shorter model.seq_len or a larger corpus"
            )
    return data


def get_batch(ids_N: jax.Array, key: jax.Array, batch_size: int, seq_len: int) -> dict:
    """B random windows of the stream: {"inputs": BxL, "targets": BxL} (targets shifted by one)."""
    starts_B = jax.random.randint(key, (batch_size,), 0, ids_N.shape[0] - seq_len)
    window = lambda s: jax.lax.dynamic_slice_in_dim(ids_N, s, seq_len + 1)  # noqa: E731
    tokens_BxLp1 = jax.vmap(window)(starts_B)
    return {"inputs": tokens_BxLp1[:, :-1], "targets": tokens_BxLp1[:, 1:]}


def as_device(ids: np.ndarray) -> jax.Array:
    return jnp.asarray(ids, dtype=jnp.int32)
