"""Floating point you can see: formats, rounding, error analysis of the LLM's operations, finite differences.

    from sandbox import numerics
    numerics.formats.describe("bfloat16").unit_roundoff        # 2^-8, from the bit layout
    numerics.rounding.round_stochastic(key, x, jnp.bfloat16)   # unbiased: E[round(x)] = x
    numerics.errors.op_errors()                                # naive vs stable softmax, logsumexp, ... per format
    numerics.finite_diff.gradient_check(loss_fn, params, batch, key)

Submodules load on first use.
"""

from sandbox import lazy

__all__ = ["curvature_precision", "errors", "finite_diff", "formats", "report", "rounding"]
__getattr__ = lazy.submodules(__name__, __all__)
