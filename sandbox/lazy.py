"""A package face whose submodules load on first use (PEP 562), so importing one submodule stays light.

    __all__ = ["config", "session"]
    __getattr__ = lazy.submodules(__name__, __all__)
"""

import importlib


def submodules(package: str, names: list[str]):
    """A module `__getattr__` that imports `package.<name>` for each name in `names` when first asked for."""

    def __getattr__(name: str):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
