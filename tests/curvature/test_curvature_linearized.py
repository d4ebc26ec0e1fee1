"""Every iterative solver runs the pass at w once (`LinearOperator.linearized`), not once per matvec.

The loss exp(x w) has one `exp` in its forward pass, and its Hessian-vector products reuse that
value: with the operator linearized no `exp` is left inside the solvers' loops; with the residual
budget at 0 (no linearization) each loop re-runs it. Tracing only, nothing is compiled.
"""

import importlib

import jax
import jax.numpy as jnp
import pytest
from jaxpr_calls import primitive_counts

from sandbox import curvature
from sandbox.curvature import linop, power, slq

# the package re-exports functions named like these modules
lanczos, trace = (importlib.import_module(f"sandbox.curvature.{m}") for m in ("lanczos", "trace"))


def exp_loss(params, x_BxD):
    return jnp.mean(jnp.exp(x_BxD @ params["w"]))


@pytest.fixture(scope="module")
def op():
    x_BxD = jax.random.normal(jax.random.key(0), (8, 6)) / 3
    return curvature.hessian(exp_loss, {"w": jnp.zeros((6, 2))}, x_BxD)


# the jitted solvers' bodies (`__wrapped__`), traced afresh each time so that the budget applies
SOLVERS = {
    "lanczos": lambda op, key: lanczos.ritz_pairs.__wrapped__(op, key, 2, 6, "top"),
    "slq": lambda op, key: slq._nodes_weights.__wrapped__(op, key, 6, 3),
    "power": lambda op, key: power._power.__wrapped__(op, key, 2, 5),
    "hutchinson": lambda op, key: trace.hutchinson.__wrapped__(op, key, 6, 2),
    "hutch++": lambda op, key: trace.hutchpp.__wrapped__(op, key, 9, 2),
    "diagonal": lambda op, key: trace.hutchinson_diagonal.__wrapped__(op, key, 6, 2),
}


@pytest.mark.parametrize("name", SOLVERS)
def test_solvers_run_the_pass_at_w_once(op, name, monkeypatch):
    def exps():  # a fresh function each time: make_jaxpr caches traces by function
        return primitive_counts(jax.make_jaxpr(lambda *a: SOLVERS[name](*a))(op, jax.random.key(1)).jaxpr, "exp")

    assert exps() == (1, 0)
    monkeypatch.setattr(linop, "LINEARIZE_MAX_BYTES", 0)
    assert exps()[1] >= 1


def test_linearized_keeps_the_operator_when_residuals_exceed_the_budget():
    """On a dataset of 3 batches: a budget below the residuals' bytes keeps the plain operator; within
    the default budget the linearized operator is the same map as the dense mean Hessian (float64)."""
    with jax.enable_x64(True):
        batches = [jax.random.normal(jax.random.key(i), (8, 6), jnp.float64) / 3 for i in range(3)]
        op = curvature.hessian(exp_loss, {"w": jnp.zeros((6, 2), jnp.float64)}, batches)
        v_N = jax.random.normal(jax.random.key(5), (12,), jnp.float64)

        @jax.jit
        def both(op, v_N):
            tight, roomy = op.linearized(max_bytes=64), op.linearized()
            return tight.rule is op.rule, roomy.rule is op.rule, roomy.mv(v_N)

        kept_tight, kept_roomy, hv_N = both(op, v_N)
        assert kept_tight and not kept_roomy
        assert jnp.allclose(hv_N, curvature.dense(op) @ v_N, rtol=1e-12, atol=1e-14)
