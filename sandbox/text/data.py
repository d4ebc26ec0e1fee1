"""Token streams, the train/val split, and batches drawn from an explicit key.

A corpus becomes one stream of token ids. The split is contiguous: the first
(1 - val_fraction) of the text trains, the rest validates, so no window of the val split
overlaps the train split. A batch is B windows of L + 1 tokens starting at offsets drawn
uniformly from the split with `jax.random`; inputs are the first L, targets the last L.
"""

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import validate
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
        validate.in_range("data", "val_fraction", self.val_fraction, 0.0, 1.0, closed=(False, False))


@dataclass
class Dataset:
    train_N: np.ndarray  # int32 token ids of the train split
    val_N: np.ndarray
    tokenizer: object  # encode(text) -> ids, decode(ids) -> text, vocab_size
    entropy_rate: float | None = None  # exact, for synthetic sources


def load_dataset(cfg: DataConfig, seq_len: int, tokenizer=None) -> Dataset:
    """Read the corpus, split it, and tokenize it with `tokenizer` (default: a new one, a BPE being
    trained on the train split only; pass a run's own tokenizer to see its data again)."""
    if cfg.corpus == "markov":
        ids = markov.sample(cfg.markov)
        cut = int(len(ids) * (1 - cfg.val_fraction))
        tok = tokenizer if tokenizer is not None else make_tokenizer(cfg.tokenizer, None, cfg.markov.alphabet)
        data = Dataset(ids[:cut], ids[cut:], tok, markov.entropy_rate(cfg.markov))
    else:
        text = corpus_lib.load_text(cfg.corpus)
        cut = int(len(text) * (1 - cfg.val_fraction))
        tok = tokenizer if tokenizer is not None else make_tokenizer(cfg.tokenizer, train_text=text[:cut])
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


@dataclass(frozen=True)
class EvalSet:
    """A named, fixed set of evaluation batches: E batches of B windows of L tokens (inputs, targets).

    Every number called "val loss" is the mean over these E batches of the batch's mean token
    cross-entropy; the name says how the windows were drawn, so two numbers are comparable
    exactly when their eval sets share a name.
    """

    name: str
    inputs_ExBxL: jax.Array
    targets_ExBxL: jax.Array

    @property
    def num_batches(self) -> int:
        return int(self.inputs_ExBxL.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.inputs_ExBxL.shape[1])

    @property
    def num_tokens(self) -> int:
        return int(np.prod(self.targets_ExBxL.shape))

    def stacked(self) -> dict:
        """{"inputs": ExBxL, "targets": ExBxL}, for `lax.map` / `lax.scan` over batches."""
        return {"inputs": self.inputs_ExBxL, "targets": self.targets_ExBxL}

    def batch(self, i: int) -> dict:
        return {"inputs": self.inputs_ExBxL[i], "targets": self.targets_ExBxL[i]}

    def batches(self) -> list[dict]:
        return [self.batch(i) for i in range(self.num_batches)]

    def take(self, num_batches: int | None = None, batch_size: int | None = None) -> "EvalSet":
        """The first `num_batches` batches, each cut to its first `batch_size` windows (a named subset)."""
        e = self.num_batches if num_batches is None else num_batches
        b = self.batch_size if batch_size is None else batch_size
        if not (1 <= e <= self.num_batches and 1 <= b <= self.batch_size):
            raise SandboxError(f"eval set {self.name} has {self.num_batches} batches of {self.batch_size} windows; "
                               f"cannot take {e} batches of {b}")
        if (e, b) == (self.num_batches, self.batch_size):
            return self
        return EvalSet(f"{self.name}[:{e},:{b}]", self.inputs_ExBxL[:e, :b], self.targets_ExBxL[:e, :b])


def draw_eval_set(ids_N, key: jax.Array, num_batches: int, batch_size: int, seq_len: int, name: str) -> EvalSet:
    """E = num_batches batches, batch i drawn by `get_batch` with the i-th key of split(key, E)."""
    ids_N = as_device(ids_N)
    keys = jax.random.split(key, num_batches)
    stacked = jax.vmap(lambda k: get_batch(ids_N, k, batch_size, seq_len))(keys)
    return EvalSet(name, stacked["inputs"], stacked["targets"])
