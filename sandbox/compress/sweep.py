"""A compression sweep: one method over a list of settings, each scored by a model-level metric.

Every row records the method, the setting, the kept-parameter fraction (stored weights of the
compressed linear layers over their dense count: k (M + N) / (M N) for SVD, nonzeros for
pruning, 1 for quantization), the bits per weight (float32 = 32 for what is kept; the integer
width plus scale overhead for quantization) and the metrics `evaluate(params)` returns.
Decompositions are computed once per method and truncated at every rank.
"""

import numpy as np

from sandbox.compress import model as cmodel
from sandbox.compress import prune, quantize, svd
from sandbox.errors import SandboxError

SVD_METHODS = ("svd", "svd-whiten", "asvd")
FLOAT_BITS = 32


def label(setting: dict) -> str:
    """"fraction=0.5", "bits=4 group(32) sym", "dtype=bfloat16", "2:4", ..."""
    if "bits" in setting:
        gran = setting["granularity"]
        gran = f"group({setting['group_size']})" if gran == "group" else gran
        return f"int{setting['bits']} {gran} {'sym' if setting['symmetric'] else 'asym'}"
    if "n" in setting:
        return f"{setting['n']}:{setting['m']}"
    return " ".join(f"{k}={v}" for k, v in setting.items())


def validate(params, plan: dict) -> None:
    """Raise a SandboxError before any work if a setting of `plan` ({method: [setting]}) cannot apply
    to some layer: a rank outside 1..min(M, N), a group size or N:M block that does not divide D_in,
    a fraction, energy or sparsity out of range."""
    shapes = [tuple(np.shape(p["w"])) for p in cmodel.linear_layers(params).values()]
    for method, settings in plan.items():
        if method not in cmodel.METHODS:
            raise SandboxError(f"method {method!r} is unknown: choose one of {', '.join(cmodel.METHODS)}")
        for setting in settings:
            for shape in shapes:
                if method in SVD_METHODS and "rank" in setting:
                    svd.check_rank(setting["rank"], shape)
                elif method in SVD_METHODS:
                    (kind, value), = setting.items()
                    if not 0.0 < value <= 1.0:
                        raise SandboxError(f"SVD {kind} {value!r} must be in (0, 1]")
                elif method == "quantize" and "bits" in setting:
                    quantize.check(shape[0], setting["bits"], setting["granularity"], setting["group_size"])
                elif method == "prune" and "n" in setting:
                    prune.check_nm(shape[0], setting["n"], setting["m"])
                elif method == "prune" and not 0.0 <= setting["sparsity"] < 1.0:
                    raise SandboxError(f"sparsity {setting['sparsity']!r} must be in [0, 1)")


def compress(params, method: str, setting: dict, decompositions=None) -> tuple[dict, dict]:
    """(compressed params, {"kept_fraction", "bits_per_weight", ["ranks"]}) for one setting."""
    layers = cmodel.linear_layers(params)
    dense = cmodel.param_count(layers)
    info = {}
    if method in SVD_METHODS:
        ranks = cmodel.choose_ranks(layers, decompositions, setting)
        new = cmodel.factorize(decompositions, ranks)
        kept = cmodel.param_count(new) / dense
        info = {"kept_fraction": kept, "bits_per_weight": FLOAT_BITS * kept, "ranks": ranks}
    elif method == "quantize":
        new, bits = cmodel.quantize_layers(layers, setting)
        info = {"kept_fraction": 1.0, "bits_per_weight": bits}
    elif method == "prune":
        new = cmodel.prune_layers(layers, setting)
        kept = sum(int(np.count_nonzero(p["w"])) for p in new.values()) / dense
        info = {"kept_fraction": kept, "bits_per_weight": FLOAT_BITS * kept}
    else:
        raise SandboxError(f"method {method!r} is unknown: choose one of {', '.join(cmodel.METHODS)}")
    return cmodel.replace_layers(params, new), info


def run(params, method: str, settings: list, evaluate, stats=None, progress=None) -> list[dict]:
    """Rows {"method", "setting", "kept_fraction", "bits_per_weight", **evaluate(compressed)} per setting."""
    decompositions = None
    if method in SVD_METHODS:
        decompositions = cmodel.decompose(cmodel.linear_layers(params), method, stats)
    rows = []
    for setting in settings:
        compressed, info = compress(params, method, setting, decompositions)
        row = {"method": method, "setting": label(setting), **{k: v for k, v in info.items() if k != "ranks"}}
        row.update(evaluate(compressed))
        if "ranks" in info:
            row["ranks"] = {k: int(v) for k, v in info["ranks"].items()}
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows
