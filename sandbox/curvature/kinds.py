"""One table of curvature matrices by name: how each is built for L(w) = loss(f(w, batch), batch).

Every consumer (`sandbox hessian`, the Laplace posteriors of `sandbox.bayes`) picks a kind from
`KINDS` by name, so a new curvature matrix is one entry here (`register`), one rule for
`operators.from_rule` and its test against the dense matrix. `output_loss_fn(z, batch)` is the mean
of a per-row loss over the output rows:

- "hessian":   H = d^2 L / dw^2, through the whole composition;
- "ggn":       J^T H_l J (PSD for convex l); for the mean softmax cross-entropy (`SOFTMAX_CE`) H_l is
               applied in closed form (`ggn_softmax`: never a V x V block, no second derivative of l);
- "fisher":    (1/N) sum_i g_i g_i^T, g_i the gradient of row i's loss at the data's labels (empirical);
- "fisher-mc": the same with labels drawn from softmax(z) (Monte-Carlo; -> the GGN of softmax CE).
"""

import dataclasses
from collections.abc import Callable

import jax

from sandbox import losses
from sandbox.curvature.ggn_softmax import softmax_ggn
from sandbox.curvature.linop import LinearOperator
from sandbox.curvature.operators import fisher, ggn, hessian
from sandbox.errors import SandboxError


def SOFTMAX_CE(logits, batch):  # noqa: N802 (a constant of the table: the loss whose H_l is known)
    """Mean softmax cross-entropy of the logits against batch["targets"]."""
    return losses.cross_entropy(logits, batch["targets"]).mean()


@dataclasses.dataclass(frozen=True)
class Kind:
    """A curvature matrix: its name in figures, and `build(model_fn, output_loss_fn, params, batch, key)`."""

    title: str
    build: Callable
    needs_key: bool = False


def _ggn(model_fn, output_loss_fn, params, batch, key):
    if output_loss_fn is SOFTMAX_CE:
        return softmax_ggn(model_fn, params, batch)
    return ggn(model_fn, output_loss_fn, params, batch)


KINDS = {
    "hessian": Kind("Hessian", lambda f, loss, p, b, key: hessian(lambda w, bb: loss(f(w, bb), bb), p, b)),
    "ggn": Kind("Gauss-Newton (GGN)", _ggn),
    "fisher": Kind("Fisher (empirical)", lambda f, loss, p, b, key: fisher(f, p, b, output_loss_fn=loss)),
    "fisher-mc": Kind("Fisher (Monte-Carlo)", lambda f, loss, p, b, key: fisher(f, p, b, kind="mc", key=key),
                      needs_key=True),
}


def register(name: str, kind: Kind) -> None:
    """Add a curvature kind under `name` (refused if taken)."""
    if name in KINDS:
        raise SandboxError(f"curvature kind {name!r} is already registered")
    KINDS[name] = kind


def operator(name: str, model_fn, output_loss_fn, params, batch, key: jax.Array | None = None) -> LinearOperator:
    """The `name` curvature operator of L(w) = output_loss_fn(model_fn(w, batch), batch)."""
    if name not in KINDS:
        raise SandboxError(f"unknown curvature kind {name!r}; valid: {', '.join(KINDS)}")
    if KINDS[name].needs_key and key is None:
        raise SandboxError(f"curvature kind {name!r} needs a PRNG key, e.g. key=jax.random.key(0)")
    return KINDS[name].build(model_fn, output_loss_fn, params, batch, key)
