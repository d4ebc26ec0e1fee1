"""Derivatives by finite differences, against jax's exact ones.

Along a direction v, with step h and unit roundoff u of the arithmetic:
- forward  (f(x + hv) - f(x))/h          truncation h|f''|/2,  rounding ~2u|f|/h  -> best h ~ 2 sqrt(u|f/f''|);
- central  (f(x + hv) - f(x - hv))/(2h)   truncation h²|f'''|/6, rounding ~u|f|/h  -> best h ~ (3u|f/f'''|)^(1/3);
- complex step  Im f(x + ihv)/h          truncation h²|f'''|/6 and no subtraction, so no rounding floor:
  any h below ~sqrt(u) gives the derivative to working precision (f must be analytic, as jnp's functions are).
So the best step is ~sqrt(u) for forward and ~cbrt(u) for central differences: 1.5e-8 / 6e-6 in float64,
3.5e-4 / 5e-3 in float32, with best errors ~sqrt(u) and ~u^(2/3).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sandbox.numerics import formats


def forward(f, x, v, h):
    return (f(x + h * v) - f(x)) / h


def central(f, x, v, h):
    return (f(x + h * v) - f(x - h * v)) / (2 * h)


def complex_step(f, x, v, h):
    complex_dtype = jnp.result_type(x.dtype, jnp.complex64)
    return jnp.imag(f(x.astype(complex_dtype) + 1j * h * v)) / h


METHODS = {"forward": forward, "central": central, "complex_step": complex_step}


def theory_steps(name: str) -> dict:
    """The textbook best steps sqrt(u) (forward) and cbrt(u) (central) of format `name`."""
    u = formats.describe(name).unit_roundoff
    return {"forward": float(np.sqrt(u)), "central": float(np.cbrt(u))}


def step_sweep(f, x_N, name: str, hs) -> dict:
    """Mean relative error of each method's f'(x) over the points x_N, per step h, in format `name`.

    f is a scalar function applied elementwise (so v = 1); the reference is jax.grad(f) in float64.
    """
    dt = formats.dtype(name)
    with jax.enable_x64(True):
        x64 = jnp.asarray(np.asarray(x_N, np.float64))
        exact = np.asarray(jax.vmap(jax.grad(f))(x64))
        x = x64.astype(dt)
        out = {"h": np.asarray(hs, np.float64)}
        for method, fd in METHODS.items():
            one = jax.jit(lambda h, fd=fd: fd(f, x, jnp.ones_like(x), h.astype(dt)))
            approx = np.stack([np.asarray(one(jnp.asarray(h)), np.float64) for h in hs])
            out[method] = np.mean(np.abs(approx - exact) / np.abs(exact), axis=1)
    return out


def best_steps(sweep: dict) -> dict:
    """The step h minimising each method's error in a `step_sweep` result, and that error."""
    rows = {}
    for method in METHODS:
        i = int(np.nanargmin(sweep[method]))
        rows[method] = {"best_h": float(sweep["h"][i]), "best_error": float(sweep[method][i])}
    return rows


def gradient_check(loss_fn, params, batch, key, num_directions: int = 8, h: float | None = None) -> dict:
    """Central differences of loss_fn(params, batch) along random unit directions vs jax's jvp.

    Runs in the params' dtype (use float64 for a tight check); h defaults to cbrt(u) of that dtype.
    Returns per-direction finite-difference and exact slopes and their relative errors.
    """
    theta, unravel = ravel_pytree(params)
    u = float(jnp.finfo(theta.dtype).eps) / 2
    h = float(np.cbrt(u)) if h is None else h
    f = lambda t: loss_fn(unravel(t), batch)
    v_KxP = jax.random.normal(key, (num_directions, theta.size), theta.dtype)
    v_KxP = v_KxP / jnp.linalg.norm(v_KxP, axis=1, keepdims=True)
    slopes = jax.jit(jax.vmap(lambda v: (jax.jvp(f, (theta,), (v,))[1], central(f, theta, v, h))))
    exact, fd = slopes(v_KxP)
    err = np.abs(np.asarray(fd - exact, np.float64)) / np.maximum(np.abs(np.asarray(exact, np.float64)), 1e-300)
    return {"h": h, "finite_difference": np.asarray(fd).tolist(), "exact": np.asarray(exact).tolist(),
            "rel_error": err.tolist(), "max_rel_error": float(err.max())}


def plot_sweeps(sweeps: dict, path) -> str:
    """Figure: error against h per method, one panel per format, with the theoretical best steps."""
    from sandbox.plotting import figure, save

    fig, axes = figure(10.0, 4.0, ncols=len(sweeps))
    for ax, (name, sweep) in zip(np.atleast_1d(axes), sweeps.items()):
        for j, method in enumerate(METHODS):
            ax.loglog(sweep["h"], np.maximum(sweep[method], 1e-18), color=f"C{j}", label=method)
        for j, (method, h) in enumerate(theory_steps(name).items()):
            ax.axvline(h, color=f"C{j}", ls=":", lw=1, label=f"theory {method} h")
        ax.set_xlabel("step h")
        ax.set_ylabel("mean relative error of f'(x) (floor 1e-18)")
        ax.set_title(f"{name}: truncation O(h), O(h²) vs rounding O(u/h)")
        ax.legend(fontsize=7)
    return save(fig, path)
