"""Curvature in low precision: the Hessian's top eigenvalues when every HVP runs in bf16 or fp16.

The operator v -> H v is built for L(cast(w, fmt)), so each Hessian-vector product (forward,
backward and its forward-mode derivative) runs in format `fmt` while Lanczos itself stays in
float32: the error measured is the HVP's. A matvec with relative error ~u·cond perturbs each
eigenvalue by about u·||H|| (Weyl), so eigenvalues much smaller than u·lambda_max do not survive;
the reference is the same Lanczos on the float64 Hessian (exact on small problems, num_steps = dim).
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import curvature
from sandbox.errors import SandboxError
from sandbox.numerics import formats


def _cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def top_eigenvalues_by_format(loss_fn, params, batch, key, k: int = 5, names=("float32", "bfloat16", "float16"),
                              num_steps: int | None = None) -> dict:
    """{"float64": top-k eigenvalues, fmt: {"eigenvalues", "rel_error", "sharpness_rel_error", "weyl_scale",
    "nonfinite"}} per format; a format whose HVPs overflow (inf / NaN) has None for the first three."""
    with jax.enable_x64(True):
        p64, b64 = _cast(params, jnp.float64), _cast(batch, jnp.float64)
        exact = np.asarray(curvature.top_eigenpairs(curvature.hessian(loss_fn, p64, b64), k, key=key,
                                                    num_steps=num_steps)[0], np.float64)
    out = {"float64": exact.tolist()}
    p32 = _cast(params, jnp.float32)
    for name in names:
        dt = formats.dtype(name)
        low = lambda p, b, dt=dt: loss_fn(_cast(p, dt), _cast(b, dt)).astype(jnp.float32)
        weyl = float(formats.describe(name).unit_roundoff * abs(exact[0]))
        try:
            vals = np.asarray(curvature.top_eigenpairs(curvature.hessian(low, p32, batch), k, key=key,
                                                       num_steps=num_steps)[0], np.float64)
        except SandboxError:  # an HVP overflowed in this format: nothing of the spectrum survives
            out[name] = {"eigenvalues": None, "rel_error": None, "sharpness_rel_error": None, "weyl_scale": weyl,
                         "nonfinite": True}
            continue
        rel = np.abs(vals - exact) / np.abs(exact)
        out[name] = {"eigenvalues": vals.tolist(), "rel_error": rel.tolist(), "sharpness_rel_error": float(rel[0]),
                     "weyl_scale": weyl, "nonfinite": False}
    return out
