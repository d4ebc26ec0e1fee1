"""Optimizers by name: the sandbox's own ("adam") and every optax one ("optax.adam", "optax.contrib.muon").

`build(cfg, total_steps)` turns an `OptimizerConfig` into one optax transformation:

    clip_by_global_norm(clip_norm)  ->  optimizer(learning_rate = lr * f(t), **args)

wrapped in `optax.inject_hyperparams`, so lr and f(t) are arrays in the optimizer state (read the
current step size with `learning_rate(state)`; overwrite `state.hyperparams["learning_rate"]`
without recompiling). Optax optimizers are found, not listed: every public function of `optax`
or `optax.contrib` whose first parameter is `learning_rate` (its `scale_by_*` transforms aside).
"""

import difflib
import functools
import inspect
import math
import typing
from collections.abc import Callable

import jax.numpy as jnp
import optax

from sandbox.errors import SandboxError
from sandbox.optim.adam import adam, adamw
from sandbox.optim.config import OptimizerConfig
from sandbox.optim.lion import lion
from sandbox.optim.muon import muon
from sandbox.optim.schedules import schedule_factor
from sandbox.optim.sgd import momentum, nesterov, sgd
from sandbox.optim.sophia import sophia

SANDBOX_OPTIMIZERS = {
    "sgd": sgd, "momentum": momentum, "nesterov": nesterov,
    "adam": adam, "adamw": adamw, "lion": lion, "muon": muon, "sophia": sophia,
}


def _optax_optimizers() -> dict:
    found = {}
    for prefix, module in (("optax", optax), ("optax.contrib", optax.contrib)):
        for attr in dir(module):
            fn = getattr(module, attr)
            if attr.startswith(("_", "scale_by")) or not inspect.isfunction(fn):
                continue
            if list(inspect.signature(fn).parameters)[:1] == ["learning_rate"]:
                found[f"{prefix}.{attr}"] = fn
    return found


@functools.cache
def registry() -> dict:
    """Every optimizer name -> its factory `f(learning_rate, **args) -> GradientTransformation`."""
    return {**SANDBOX_OPTIMIZERS, **_optax_optimizers()}


def resolve(name: str) -> Callable:
    """The factory registered as `name`; an unknown name raises with the closest known names."""
    names = registry()
    if name not in names:
        close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SandboxError(
            f"unknown optimizer {name!r}{hint} (`sandbox list optimizers` lists all {len(names)})"
        )
    return names[name]


def _keywords(factory: Callable) -> list:
    return [p for p in inspect.signature(factory).parameters if p != "learning_rate"]


def check_args(name: str, args: dict) -> None:
    """Raise unless `args` are keywords `name` accepts and fill all of its required ones."""
    factory = resolve(name)
    valid = _keywords(factory)
    if "learning_rate" in args:
        raise SandboxError("set the step size with optimizer.learning_rate, not optimizer.args.learning_rate")
    for key in args:
        if key not in valid:
            raise SandboxError(
                f"optimizer {name!r} has no argument {key!r}; valid: {', '.join(valid) or '(none)'}"
            )
    try:
        inspect.signature(factory).bind(learning_rate=1.0, **args)
    except TypeError as e:
        raise SandboxError(f"optimizer {name!r}: {e}; set it under optimizer.args") from None
    parameters = inspect.signature(factory).parameters
    for key, value in args.items():
        wrong = _wrong_value(parameters[key], value)
        if wrong:
            raise SandboxError(f"optimizer {name!r}: optimizer.args.{key}={value!r} {wrong}")


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_DECAY_RATES = {"b1", "b2", "b3", "beta", "beta1", "beta2", "momentum", "decay", "rho", "decay_rate"}
_NON_NEGATIVE = {"eps", "eps_root", "epsilon", "weight_decay"}


def _wrong_value(parameter: inspect.Parameter, value) -> str | None:
    """Why `value` cannot be `parameter` (judged by its default, else a plain annotation), or None."""
    default, annotation = parameter.default, parameter.annotation
    if typing.get_origin(annotation) is typing.Literal and value not in typing.get_args(annotation):
        return f"is not one of {', '.join(map(repr, typing.get_args(annotation)))}"
    expected = type(default) if default not in (None, inspect.Parameter.empty) else annotation
    if expected is bool and not isinstance(value, bool):
        return "must be true or false"
    if expected is int and annotation is int and not (isinstance(value, int) and not isinstance(value, bool)):
        return "must be an integer"
    if expected in (int, float) and not _is_real(value):
        return "must be a number"
    if expected in (int, float) and not math.isfinite(value):
        return "must be a finite number"
    if _is_real(value) and parameter.name in _DECAY_RATES and not 0 <= value < 1:
        return "must lie in [0, 1) (a decay rate: 1 or more never forgets, or diverges)"
    if _is_real(value) and parameter.name in _NON_NEGATIVE and value < 0:
        return "must be >= 0"
    if expected is str and annotation in (str, inspect.Parameter.empty) and not isinstance(value, str):
        return "must be a string"
    return None


def build(cfg: OptimizerConfig, total_steps: int) -> optax.GradientTransformationExtraArgs:
    """The optimizer of `cfg`, clipped, scheduled over `total_steps`, lr held in its state.

    Its `update(grads, state, params, **extra)` passes extra keyword arguments (Sophia's
    `obj_fn`, as optax.contrib.sophia's) to the optimizers that use them and drops them for the rest.
    """
    factory = resolve(cfg.name)
    check_args(cfg.name, cfg.args)
    try:  # surface a bad value now, as a message, rather than deep inside jit
        factory(learning_rate=cfg.learning_rate, **cfg.args)
    except (TypeError, ValueError) as e:
        raise SandboxError(f"optimizer {cfg.name!r} rejected optimizer.args={cfg.args}: {e}") from None

    def scheduled(learning_rate, lr_factor):
        step = factory(learning_rate=learning_rate * lr_factor, **cfg.args)
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), step) if cfg.clip_norm else step

    return optax.inject_hyperparams(scheduled)(
        learning_rate=cfg.learning_rate, lr_factor=schedule_factor(cfg, total_steps)
    )


def learning_rate(opt_state):
    """The step size the last update used: learning_rate * f(t) from the state `build` made."""
    return opt_state.hyperparams["learning_rate"] * opt_state.hyperparams["lr_factor"]


def _signature(factory: Callable) -> str:
    parts = []
    for p in inspect.signature(factory).parameters.values():
        if p.name != "learning_rate":
            parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


def describe() -> list:
    """(name, keyword arguments with defaults, first line of the docstring) for every optimizer."""
    return [
        (name, _signature(f), (inspect.getdoc(f) or "").strip().splitlines()[0] if f.__doc__ else "")
        for name, f in registry().items()
    ]


def set_learning_rate(opt_state, value):
    """The state with base learning rate `value` (same dtype, so a jitted step does not recompile)."""
    old = opt_state.hyperparams["learning_rate"]
    return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": jnp.asarray(value, old.dtype)})
