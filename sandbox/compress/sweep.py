"""A compression sweep: one method over a list of settings, each scored by a model-level metric.

Every row records the method, the setting, the kept-parameter fraction (stored weights of the
compressed linear layers over their dense count: k (M + N) / (M N) for SVD, nonzeros for
pruning, 1 for quantization), the bits per weight (float32 = 32 for what is kept; the integer
width plus scale overhead for quantization) and the metrics `evaluate(params)` returns.
A method's preparation (SVD: the decompositions) runs once and serves every setting. Every
compressed model is scored in the original layer shapes (factors multiplied out, `model.densify`),
so one compiled model serves every setting of every method; or, with `rank_multiple`, through its thin
factors zero-padded to rank buckets, for a model whose run time outweighs its compile time.
"""

import numpy as np

from sandbox.compress import model as cmodel
from sandbox.compress.methods import get


def validate(params, plan: dict, groups: dict | None = None) -> None:
    """Raise a SandboxError before any work if a setting of `plan` ({method: [setting]}) cannot apply
    to some layer: a rank outside 1..min(M, N), a group size or N:M block that does not divide D_in,
    a fraction, energy or sparsity out of range."""
    shapes = [tuple(np.shape(p["w"])) for p in cmodel.linear_layers(params, groups).values()]
    for name, settings in plan.items():
        method = get(name)
        for setting in settings:
            for shape in shapes:
                method.validate(setting, shape)


def compress(params, method: str, setting: dict, prepared=None, groups: dict | None = None) -> tuple[dict, dict]:
    """(compressed params, {"kept_fraction", "bits_per_weight", ["ranks"]}) for one setting."""
    layers = cmodel.linear_layers(params, groups)
    new, info = get(method).apply(layers, setting, prepared)
    return cmodel.replace_layers(params, new), info


def run(params, method: str, settings: list, evaluate, stats=None, progress=None,
        groups: dict | None = None, rank_multiple: int | None = None, predict=None) -> list[dict]:
    """Rows {"method", "setting", "kept_fraction", "bits_per_weight", **evaluate(compressed)} per setting,
    and **predict(compressed) if given (in the original layer shapes, e.g. `taylor.Taylor.predict`)."""
    m = get(method)
    prepared = m.prepare(cmodel.linear_layers(params, groups), stats)
    rows = []
    for setting in settings:
        compressed, info = compress(params, method, setting, prepared, groups)
        row = {"method": method, "setting": m.label(setting), **{k: v for k, v in info.items() if k != "ranks"}}
        scored = cmodel.densify(compressed, groups, rank_multiple)
        row.update(evaluate(scored))
        if predict is not None:
            row.update(predict(scored if rank_multiple is None else cmodel.densify(compressed, groups)))
        if "ranks" in info:
            row["ranks"] = {k: int(v) for k, v in info["ranks"].items()}
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows
