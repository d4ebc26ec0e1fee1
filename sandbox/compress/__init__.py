"""Numerical methods of compression: SVD truncation (plain, whitened, activation-scaled), quantization,
pruning, second-order compression (GPTQ, SparseGPT on an OBS engine), weight spectra, the loss change
predicted by a Taylor model, and one registry of methods that a sweep draws from.

    from sandbox import compress
    out = compress.quantize.quantize(w_IxO, bits=4, granularity="group", group_size=64)   # round to nearest
    compress.spectra.fit_power_law(compress.spectra.esd(w_IxO))["alpha"]                  # heavy-tail exponent
    w_hat, info = compress.gptq.quantize(w_IxO, hessian_IxI, bits=4, group_size=64)   # OBS against H = 2 X^T X
    compress.methods.METHODS                    # the registry: each method carries its whole behaviour

Submodules load on first use.
"""

from sandbox import lazy

__all__ = ["figures", "gptq", "methods", "model", "obs", "prune", "quantize", "report", "spectra", "svd", "sweep",
           "taylor"]
__getattr__ = lazy.submodules(__name__, __all__)
