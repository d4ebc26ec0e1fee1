"""Numerical methods of compression: SVD truncation (plain, whitened, activation-scaled), quantization,
pruning, weight spectra, and one registry of methods that a sweep draws from.

    from sandbox import compress
    out = compress.quantize.quantize(w_IxO, bits=4, granularity="group", group_size=64)   # round to nearest
    compress.spectra.fit_power_law(compress.spectra.esd(w_IxO))["alpha"]                  # heavy-tail exponent
    compress.methods.METHODS                    # the registry: each method carries its whole behaviour

Submodules load on first use.
"""

from sandbox import lazy

__all__ = ["figures", "methods", "model", "prune", "quantize", "report", "spectra", "svd", "sweep"]
__getattr__ = lazy.submodules(__name__, __all__)
