"""Binary floating-point formats from their bit layout: the constants every error bound uses.

A format with e exponent bits and m stored mantissa bits has bias b = 2^(e-1) - 1 and represents
±(1.f)·2^k for k in [1-b, k_max] (normal) and ±(0.f)·2^(1-b) (subnormal). From the layout alone:
machine epsilon eps = 2^-m (gap above 1), unit roundoff u = eps/2 (the largest relative error of
round-to-nearest), smallest normal 2^(1-b), smallest subnormal 2^(1-b-m), and largest finite
(2 - 2^-m)·2^b for IEEE formats. float8 e4m3fn has no infinities: its top exponent holds numbers too
(k_max = b + 1) and only the all-ones mantissa there is NaN, so its largest is (2 - 2^(1-m))·2^(b+1) = 448.
"""

from dataclasses import asdict, dataclass

import ml_dtypes
import numpy as np

from sandbox.errors import SandboxError

DTYPES = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float16": np.dtype(np.float16),
    "float8_e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
}
# (exponent bits, stored mantissa bits, IEEE-style top exponent reserved for inf/NaN)
LAYOUT = {"float64": (11, 52, True), "float32": (8, 23, True), "bfloat16": (8, 7, True),
          "float16": (5, 10, True), "float8_e4m3": (4, 3, False), "float8_e5m2": (5, 2, True)}
NAMES = tuple(DTYPES)


@dataclass(frozen=True)
class Format:
    name: str
    bits: int
    exponent_bits: int
    mantissa_bits: int
    eps: float
    unit_roundoff: float
    smallest_normal: float
    smallest_subnormal: float
    largest_finite: float
    min_exponent: int  # exponent k of the smallest normal, 1 - bias

    def as_dict(self) -> dict:
        return asdict(self)


def dtype(name: str) -> np.dtype:
    """The numpy/JAX dtype of format `name` (one of NAMES)."""
    if name not in DTYPES:
        raise SandboxError(f"unknown number format {name!r}; valid: {', '.join(NAMES)}")
    return DTYPES[name]


def describe(name: str) -> Format:
    """The constants of format `name`, derived from its bit layout (not read from finfo)."""
    dtype(name)
    e, m, ieee = LAYOUT[name]
    bias = 2 ** (e - 1) - 1
    largest = (2 - 2.0**-m) * 2.0**bias if ieee else (2 - 2.0 ** (1 - m)) * 2.0 ** (bias + 1)
    return Format(name=name, bits=1 + e + m, exponent_bits=e, mantissa_bits=m, eps=2.0**-m,
                  unit_roundoff=2.0 ** (-m - 1), smallest_normal=2.0 ** (1 - bias),
                  smallest_subnormal=2.0 ** (1 - bias - m), largest_finite=largest, min_exponent=1 - bias)


def table() -> list[dict]:
    """One row of constants per format, widest first."""
    return [describe(n).as_dict() for n in NAMES]


def positive_values(name: str) -> np.ndarray:
    """Every positive finite number of a format of at most 16 bits, ascending (all bit patterns, decoded)."""
    dt = dtype(name)
    if dt.itemsize > 2:
        raise SandboxError(f"{name} has too many values to list; positive_values takes formats of <= 16 bits")
    patterns = np.arange(2 ** (8 * dt.itemsize), dtype=np.uint8 if dt.itemsize == 1 else np.uint16)
    with np.errstate(invalid="ignore"):
        values = patterns.view(dt).astype(np.float64)
    return np.unique(values[np.isfinite(values) & (values > 0)])


def spacing(x, name: str) -> np.ndarray:
    """ulp(x): the gap between consecutive numbers of format `name` at |x|, 2^(max(floor(log2|x|), k_min) - m).

    Computed on the host in float64 (XLA on CPU flushes float32 subnormals to zero).
    """
    f = describe(name)
    k = np.floor(np.log2(np.abs(np.asarray(x, np.float64))))
    return 2.0 ** (np.maximum(k, f.min_exponent) - f.mantissa_bits)


def plot_formats(path) -> str:
    """Figure: each format's range on a log2 line (subnormal / normal), and relative spacing ulp(x)/x."""
    from sandbox.plotting import figure, save

    fig, (top, bottom) = figure(8.0, 6.0, nrows=2)
    for i, name in enumerate(NAMES):
        f = describe(name)
        lo, mid, hi = np.log2([f.smallest_subnormal, f.smallest_normal, f.largest_finite])
        top.barh(i, mid - lo, left=lo, color="tab:orange", alpha=0.6, label="subnormal" if i == 0 else None)
        top.barh(i, hi - mid, left=mid, color="tab:blue", alpha=0.6, label="normal" if i == 0 else None)
        if f.bits <= 8:
            top.plot(np.log2(positive_values(name)), np.full(len(positive_values(name)), i), "|k", ms=6)
    top.set_yticks(range(len(NAMES)), NAMES)
    top.set_xlim(-160, 140)
    top.set_xlabel("log2 of positive value (float64 spans -1074 .. 1024, clipped; ticks: every float8 value)")
    top.set_title("Representable positive numbers per format")
    top.legend(fontsize=8, loc="lower right")
    x = 2.0 ** np.linspace(-30, 20, 4000)
    for name in NAMES[1:]:
        f = describe(name)
        inside = (x >= f.smallest_subnormal) & (x <= f.largest_finite)
        bottom.loglog(x[inside], np.asarray(spacing(x[inside], name)) / x[inside], label=name, lw=1)
    bottom.set_xlabel("x")
    bottom.set_ylabel("relative spacing ulp(x) / x")
    bottom.set_title("Relative gap: between eps/2 and eps for normals, growing in the subnormal range")
    bottom.legend(fontsize=8, ncol=3)
    return save(fig, path)
