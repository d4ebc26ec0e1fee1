"""Curvature toolkit: Hessian/GGN/Fisher operators, Lanczos, SLQ densities, traces, Jacobians.

    op = curvature.hessian(loss_fn, params, batch)          # or ggn(...), fisher(...)
    eigvals, eigvecs = curvature.top_eigenpairs(op, k=5, key=key)
    grid, density = curvature.spectral_density(op, key=key)
    estimate = curvature.trace(op, key=key, num_matvecs=99, method="hutch++")
    out = curvature.blocks.spectra(op, masks_TxN, key=key, k=10, num_steps=80)  # many blocks, one program
"""

from sandbox.curvature import blocks, kinds, lanczos_plain
from sandbox.curvature.eigh import eigh
from sandbox.curvature.ggn_softmax import softmax_ggn
from sandbox.curvature.jacobian import Jacobian, jacobian, singular_values
from sandbox.curvature.lanczos import (
                                       Eigenpairs,
                                       Tridiagonal,
                                       bottom_eigenpairs,
                                       eigenpairs,
                                       lanczos,
                                       top_eigenpairs,
                                       tridiagonal_eigh,
)
from sandbox.curvature.linop import Layout, LinearOperator, dense, from_dense
from sandbox.curvature.operators import fisher, ggn, hessian
from sandbox.curvature.power import power_iteration
from sandbox.curvature.sharpness import preconditioned_sharpness, sharpness
from sandbox.curvature.slq import kernel_density, slq_nodes_weights, smooth_density, spectral_density
from sandbox.curvature.trace import diagonal, trace

__all__ = [
    "Eigenpairs", "blocks", "kinds", "lanczos_plain", "Jacobian", "Layout", "LinearOperator", "Tridiagonal",
    "bottom_eigenpairs",
    "dense", "diagonal", "eigh", "kernel_density", "eigenpairs", "fisher", "from_dense", "ggn", "hessian", "jacobian",
    "lanczos", "power_iteration", "preconditioned_sharpness", "sharpness", "singular_values",
    "slq_nodes_weights", "smooth_density", "softmax_ggn", "spectral_density", "top_eigenpairs", "trace",
    "tridiagonal_eigh",
]
