"""Rounding as pure functions: nearest-even, stochastic, compensated sums, and errors in ulps.

Round-to-nearest-even (RNE) maps x to the closest number of the format (ties to an even mantissa):
|fl(x) - x| <= u|x|. Stochastic rounding (SR) picks one of the two neighbours lo <= x <= hi with
P(hi) = (x - lo)/(hi - lo), so E[SR(x)] = x exactly and Var[SR(x)] = (hi - x)(x - lo): it is unbiased,
which is why tiny updates w + dw with |dw| < ulp(w)/2 still move w on average instead of vanishing.
Kahan summation carries the rounding error of each addition in a compensation term c, so the
error of a sum of n terms is at most 2u·sum|x_i| (+ O(n u^2)) instead of the naive (n-1)u·sum|x_i|.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sandbox.numerics import formats


def round_nearest(x, dtype):
    """fl(x): x rounded to `dtype` by round-to-nearest-even (the hardware cast)."""
    return jnp.asarray(x).astype(dtype)


def neighbours(x, dtype):
    """(lo, hi): the numbers of `dtype` with lo <= x <= hi, adjacent (equal when x is representable), in x's dtype."""
    x = jnp.asarray(x)
    y = x.astype(dtype)
    step = jnp.where(y.astype(x.dtype) > x, -jnp.inf, jnp.inf).astype(dtype)
    other = jnp.nextafter(y, step)
    other = jnp.where(y.astype(x.dtype) == x, y, other).astype(x.dtype)
    y = y.astype(x.dtype)
    return jnp.minimum(y, other), jnp.maximum(y, other)


def round_stochastic(key, x, dtype):
    """SR(x): lo or hi (the neighbours of x in `dtype`) with P(hi) = (x - lo)/(hi - lo); E[SR(x)] = x.

    Out-of-range values (beyond the largest finite number) round to nearest, as the cast does.
    """
    x = jnp.asarray(x)
    lo, hi = neighbours(x, dtype)
    gap = hi - lo
    p_hi = jnp.where(gap > 0, (x - lo) / jnp.where(gap > 0, gap, 1), 0)
    up = jax.random.uniform(key, x.shape, x.dtype) < p_hi
    out = jnp.where(up, hi, lo)
    return jnp.where(jnp.isfinite(gap), out, x).astype(dtype)


def stochastic_variance(x, dtype):
    """Var[SR(x)] = (hi - x)(x - lo): zero on representable x, largest (gap²/4) halfway between."""
    lo, hi = neighbours(x, dtype)
    return (hi - x) * (x - lo)


@jax.jit
def sequential_sum(x_N):
    """s_k = fl(s_{k-1} + x_k) in x's dtype, left to right: error <= (n-1)u·sum|x| (first order)."""
    return jax.lax.scan(lambda s, v: (s + v, None), jnp.zeros((), x_N.dtype), x_N)[0]


@jax.jit
def pairwise_sum(x_N):
    """Recursive halving in x's dtype (what XLA's reductions do): error <= ceil(log2 n)·u·sum|x|."""
    x = x_N
    while x.shape[0] > 1:
        if x.shape[0] % 2:
            x = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])
        x = x[0::2] + x[1::2]
    return x[0]


def kahan_add(total, comp, increment):
    """One compensated addition (total, comp) + increment -> (total', comp'); comp holds -(lost low bits).

    y = increment - comp;  t = fl(total + y);  comp' = fl(fl(t - total) - y);  total' = t.
    """
    y = increment - comp
    t = total + y
    return t, (t - total) - y


@jax.jit
def kahan_sum(x_N):
    """Kahan's compensated sum in x's dtype: error <= 2u·sum|x| + O(n u²)·sum|x|, independent of n."""
    zero = jnp.zeros((), x_N.dtype)
    (total, _), _ = jax.lax.scan(lambda c, v: (kahan_add(*c, v), None), (zero, zero), x_N)
    return total


def relative_error(approx, exact):
    """|approx - exact| / |exact| elementwise, in float64 on the host (inf where exact is 0 and approx not)."""
    approx = np.asarray(approx, np.float64)
    exact = np.asarray(exact, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(approx - exact) / np.abs(exact)
    return np.where(approx == exact, 0.0, err)


def ulp_error(approx, exact, name: str):
    """|approx - exact| in units of the last place of format `name` at `exact` (RNE alone gives <= 0.5)."""
    exact = np.asarray(exact, np.float64)
    tiny = formats.describe(name).smallest_subnormal
    ulp = np.asarray(formats.spacing(np.maximum(np.abs(exact), tiny), name), np.float64)
    return np.abs(np.asarray(approx, np.float64) - exact) / ulp
