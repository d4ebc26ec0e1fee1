"""Position-wise feed-forward blocks: GELU MLP and SwiGLU."""

import jax

from sandbox.nn.linear import dense


def gelu(x, approximate=True):
    """GELU(x) = x Phi(x) with Phi the standard normal CDF (exact, via erf: BERT),
    or its tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2)."""
    return jax.nn.gelu(x, approximate=approximate)


def gelu_mlp(p, x_NxD, approximate=True):
    """down(GELU(up(x))), p = {"up", "down"}: D -> F -> D."""
    return dense(p["down"], gelu(dense(p["up"], x_NxD), approximate))


def swiglu_mlp(p, x_NxD):
    """down(SiLU(gate(x)) * up(x)), p = {"up", "gate", "down"} (Shazeer, 2020).

    The gate multiplies the hidden units, so each unit's output is a product of two
    linear forms of x: quadratic rather than piecewise-linear in x.
    """
    return dense(p["down"], jax.nn.silu(dense(p["gate"], x_NxD)) * dense(p["up"], x_NxD))
