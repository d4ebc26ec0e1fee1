"""Bring your own flax model: a `flax.linen` or `flax.nnx` model as (logits_fn, params) for the analyses.

The analyses take a plain params pytree and `logits_fn(params, batch) -> logits`; these adapters
give both for a flax model, so the curvature operators, compression (through `sandbox.nn.groups`,
which reads flax's `kernel`/`embedding`/`scale` names) and the optimizers see it like the sandbox's
own transformer:

    logits_fn, params = flax_models.from_linen(module, variables)     # linen: apply({"params": p}, x)
    logits_fn, params = flax_models.from_nnx(model)                   # nnx: split into graph + params
    op = analysis.curvature.operator("hessian", logits_fn, params, {"inputs": x, "targets": y}, key)
"""

import jax


def from_linen(module, variables: dict, input_key: str = "inputs"):
    """(logits_fn, params) of a linen module: params = variables["params"]; other collections are held fixed."""
    rest = {k: v for k, v in variables.items() if k != "params"}

    def logits_fn(params, batch):
        return module.apply({**rest, "params": params}, batch[input_key])

    return logits_fn, variables["params"]


def from_nnx(model, input_key: str = "inputs"):
    """(logits_fn, params) of an nnx model: `nnx.split` into the graph and its `nnx.Param` state, the
    state as a plain dict; the other state (batch statistics, RNG counters) is held fixed."""
    from flax import nnx

    graphdef, state, rest = nnx.split(model, nnx.Param, ...)

    def logits_fn(params, batch):
        fresh = jax.tree.map(lambda x: x, state)  # a copy: replace_by_pure_dict writes in place
        nnx.replace_by_pure_dict(fresh, params)
        return nnx.merge(graphdef, fresh, rest)(batch[input_key])

    return logits_fn, nnx.to_pure_dict(state)
