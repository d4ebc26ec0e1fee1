"""Parameter groups: which subtrees of a params tree are embeddings, attention, MLP, norms, other linear maps.

A grouping is `{group: [subtree path, ...]}` with slash paths ("block_0/attn"). Models that know
their own layout say it (`transformer.param_groups`, `minilm.param_groups`); for any other tree
(a flax.linen or flax.nnx model's params) `infer` reads the usual names, first match wins: a
module holding only 1-D `scale`/`bias` is a norm, one holding an `embedding` or under a name with
"embed" an embedding, one under "attn"/"attention" attention, "mlp"/"ffn" an MLP, any other module
with a 2-D `w`/`kernel` a linear map. Compression and curvature only read the grouping.
"""

import re

import numpy as np
from flax import traverse_util

GROUPS = ("embeddings", "attention", "mlp", "norms", "linear", "other")
WEIGHTS = ("w", "u", "kernel")  # names of a linear map's (D_in, D_out) weight leaf
NOT_LINEAR = ("embeddings", "norms")  # groups whose 2-D leaves are tables or absent, never compressed
_PATTERNS = (("attention", re.compile(r"attn|attention", re.I)), ("mlp", re.compile(r"mlp|ffn|feed_?forward", re.I)))


def infer(params) -> dict:
    """{group: [module path, ...]} read from the names in `params` (see the module docstring)."""
    modules = {}
    for key, leaf in traverse_util.flatten_dict(params).items():
        modules.setdefault(key[:-1], {})[key[-1]] = leaf
    groups = {}
    for path, leaves in modules.items():
        group, cut = _classify(path, leaves)
        name = "/".join(path[:cut])
        if name not in groups.setdefault(group, []):
            groups[group].append(name)
    return {g: groups[g] for g in GROUPS if g in groups}


def _classify(path: tuple, leaves: dict) -> tuple[str, int]:
    names = [str(p) for p in path]
    if set(leaves) <= {"scale", "bias"} and all(np.ndim(x) == 1 for x in leaves.values()):
        return "norms", len(path)
    if "embedding" in leaves or any("embed" in n.lower() for n in names):
        return "embeddings", len(path)
    for group, pattern in _PATTERNS:
        hits = [i for i, n in enumerate(names) if pattern.search(n)]
        if hits:
            return group, hits[0] + 1
    if any(k in leaves and np.ndim(leaves[k]) == 2 for k in WEIGHTS):
        return "linear", len(path)
    return "other", len(path)


def linear_roots(groups: dict) -> list[str]:
    """The subtree paths whose 2-D weights are linear maps (every group but embeddings and norms)."""
    return [p for g, paths in groups.items() if g not in NOT_LINEAR for p in paths]


def blocks(groups: dict) -> list[str]:
    """Every subtree path of the grouping, in group order: the diagonal blocks curvature looks at."""
    return [p for paths in groups.values() for p in paths]
