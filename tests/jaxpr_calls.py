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
