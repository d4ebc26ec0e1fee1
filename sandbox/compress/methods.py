"""The compression methods, one registry: each says if it needs calibration, checks a setting
against a layer shape, prepares once per sweep, compresses the layers for one setting, and labels it.

Adding a method is one `Method(...)` entry in `METHODS`: the entry carries the method's whole behaviour
(an SVD-family member its own per-layer decomposition), nothing dispatches on its name elsewhere. A
method of `family` "svd" takes the sweep's rank settings, "quantize" its bit widths and float casts,
"integer" its bit widths only (+ act_order), "prune" its sparsities and N:M patterns (see
`sandbox.analysis.compression.plan`).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.compress import gptq, obs, prune, quantize, svd
from sandbox.compress import model as cmodel
from sandbox.errors import SandboxError

FLOAT_BITS = 32


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    family: str  # "svd", "quantize", "integer" or "prune": which sweep options make its settings
    needs_calibration: bool  # prepare() reads activation statistics
    validate: Callable[[dict, tuple], None]  # (setting, (D_in, D_out)) -> raise SandboxError if it cannot apply
    apply: Callable  # (layers, setting, prepared) -> (new layers, {"kept_fraction", "bits_per_weight", ...})
    label: Callable[[dict], str]
    prepare: Callable = lambda layers, stats: None  # (layers, stats) -> what apply reuses across settings


def _check_svd(setting: dict, shape: tuple) -> None:
    (kind, value), = setting.items()
    if kind == "rank":
        svd.check_rank(value, shape)
    elif kind not in ("fraction", "energy", "budget"):
        raise SandboxError(f"SVD setting {kind!r} is unknown: choose rank, fraction, energy or budget")
    elif not 0.0 < value <= 1.0:
        raise SandboxError(f"SVD {kind} {value!r} must be in (0, 1]")


def _apply_svd(layers, setting, decompositions):
    ranks = cmodel.choose_ranks(layers, decompositions, setting)
    new = cmodel.factorize(decompositions, ranks)
    kept = cmodel.param_count(new) / cmodel.param_count(layers)
    return new, {"kept_fraction": kept, "bits_per_weight": FLOAT_BITS * kept, "ranks": ranks}


def _check_quantize(setting: dict, shape: tuple) -> None:
    if "dtype" in setting:
        if setting["dtype"] not in quantize.FLOAT_DTYPES:
            raise SandboxError(f"float cast {setting['dtype']!r} is not supported: choose from "
                               + ", ".join(quantize.FLOAT_DTYPES))
    else:
        quantize.check(shape[0], setting["bits"], setting["granularity"], setting["group_size"])


def _apply_quantize(layers, setting, _):
    new, bits = cmodel.quantize_layers(layers, setting)
    return new, {"kept_fraction": 1.0, "bits_per_weight": bits}


def _label_quantize(setting: dict) -> str:
    if "dtype" in setting:
        return f"dtype={setting['dtype']}"
    gran = f"group({setting['group_size']})" if setting["granularity"] == "group" else setting["granularity"]
    return f"int{setting['bits']} {gran} {'sym' if setting['symmetric'] else 'asym'}"


def _check_prune(setting: dict, shape: tuple) -> None:
    if "n" in setting:
        prune.check_nm(shape[0], setting["n"], setting["m"])
    elif not 0.0 <= setting["sparsity"] < 1.0:
        raise SandboxError(f"sparsity {setting['sparsity']!r} must be in [0, 1)")


def _apply_prune(layers, setting, ranks):
    new = cmodel.prune_layers(layers, setting, ranks)
    kept = sum(int(np.count_nonzero(p["w"])) for p in new.values()) / cmodel.param_count(layers)
    return new, {"kept_fraction": kept, "bits_per_weight": FLOAT_BITS * kept}


def _label_prune(setting: dict) -> str:
    return f"{setting['n']}:{setting['m']}" if "n" in setting else f"sparsity={setting['sparsity']}"


def _svd(name: str, decomposition: Callable, calibrated: bool) -> Method:
    """An SVD-family member: `decomposition(W, layer_stats) -> (A, s, V^T)`, truncated at each setting's ranks."""
    prepare = lambda layers, stats: cmodel.decompose(layers, decomposition, stats)
    return Method(name, "svd", calibrated, _check_svd, _apply_svd,
                  label=lambda s: " ".join(f"{k}={v}" for k, v in s.items()),
                  prepare=_calibrated(name, prepare) if calibrated else prepare)


def _calibrated(name: str, prepare: Callable) -> Callable:
    def checked(layers, stats):
        if stats is None:
            raise SandboxError(f"method {name!r} needs calibration activations; none were given")
        return prepare(layers, stats)
    return checked


def _plain(w_MxN, _):
    return svd.plain_decomposition(w_MxN)


def _whitened(w_MxN, stats, damp: float = 1e-6):
    return svd.whitened_decomposition(w_MxN, svd.damped(jnp.asarray(stats["gram"], jnp.float32), damp))


def _activation_scaled(w_MxN, stats, alpha: float = 0.5):
    return svd.asvd_decomposition(w_MxN, svd.scale_from_abs_mean(jnp.asarray(stats["abs_mean"], jnp.float32), alpha))


def _hessians(layers, stats) -> dict:
    """{path: H = 2 X^T X}: each layer's Hessian of its squared output error on the calibration inputs."""
    return {path: obs.layer_hessian(stats[path]["gram"]) for path in layers}


def _check_integer(setting: dict, shape: tuple) -> None:
    quantize.check(shape[0], setting["bits"], setting["granularity"], setting["group_size"])


def _apply_gptq(layers, setting, hessians):
    out, bits = {}, 0.0
    group = setting["group_size"] if setting["granularity"] == "group" else None
    for path, p in layers.items():
        w_hat, info = gptq.quantize(p["w"], hessians[path], setting["bits"], group, act_order=setting["act_order"],
                                    symmetric=setting["symmetric"], granularity=setting["granularity"])
        out[path] = {"w": jax.device_put(w_hat.astype(np.asarray(p["w"]).dtype))}
        bits += info["bits_per_weight"] * w_hat.size
    return out, {"kept_fraction": 1.0, "bits_per_weight": bits / cmodel.param_count(layers)}


def _label_gptq(setting: dict) -> str:
    return _label_quantize(setting) + (" act-order" if setting["act_order"] else "")


def _apply_sparsegpt(layers, setting, hessians):
    out = {}
    for path, p in layers.items():
        kind = {"n_m": (setting["n"], setting["m"])} if "n" in setting else {"sparsity": setting["sparsity"]}
        w_hat, _ = gptq.prune(p["w"], hessians[path], **kind)
        out[path] = {"w": jax.device_put(w_hat.astype(np.asarray(p["w"]).dtype))}
    kept = sum(int(np.count_nonzero(p["w"])) for p in out.values()) / cmodel.param_count(layers)
    return out, {"kept_fraction": kept, "bits_per_weight": FLOAT_BITS * kept}


METHODS = {m.name: m for m in (
    _svd("svd", _plain, calibrated=False),
    _svd("svd-whiten", _whitened, calibrated=True),  # SVD of W in the metric of the input Gram (SVD-LLM)
    _svd("asvd", _activation_scaled, calibrated=True),  # SVD of diag(mean |x|)^alpha W (activation-aware SVD)
    Method("quantize", "quantize", False, _check_quantize, _apply_quantize, _label_quantize),
    Method("prune", "prune", False, _check_prune, _apply_prune, _label_prune,
           prepare=lambda layers, stats: {path: prune.magnitude_ranks(p["w"]) for path, p in layers.items()}),
    # OBS against each layer's calibration Hessian 2 X^T X (sandbox.compress.gptq)
    Method("gptq", "integer", True, _check_integer, _apply_gptq, _label_gptq, _calibrated("gptq", _hessians)),
    Method("sparsegpt", "prune", True, _check_prune, _apply_sparsegpt, _label_prune,
           _calibrated("sparsegpt", _hessians)),
)}


def get(name: str) -> Method:
    if name not in METHODS:
        raise SandboxError(f"method {name!r} is unknown: choose one of {', '.join(METHODS)}")
    return METHODS[name]
