"""Walk a jaxpr, nested ones included, for the LAPACK eigh calls it makes."""


def batched_eigh_shapes(jaxpr) -> list[tuple]:
    """Operand shapes of the eigh calls whose operand has batch dimensions (jaxlib may split those
    over its intra-op pool and wait: two at once can deadlock a small pool, see curvature.eigh)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "eigh" and eqn.invars[0].aval.ndim > 2:
            found.append(eqn.invars[0].aval.shape)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    found += batched_eigh_shapes(sub)
    return found


def primitive_counts(jaxpr, name: str, in_loop: bool = False) -> tuple[int, int]:
    """(outside any loop, inside a scan/while body) counts of the primitive `name` in a jaxpr."""
    outside = inside = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == name:
            inside, outside = (inside + 1, outside) if in_loop else (inside, outside + 1)
        loop = in_loop or eqn.primitive.name in ("scan", "while")
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    o, i = primitive_counts(sub, name, loop)
                    outside, inside = outside + o, inside + i
    return outside, inside
