"""GPTQ's layer Hessian beside Adam's preconditioner: spectra and principal angles against closed forms."""

import numpy as np
import pytest

from sandbox.analysis import compression


def test_a_diagonal_hessian_is_seen_by_adam_whole():
    """H diagonal and Adam's marginal proportional to it: the same axes (angles 0), rank correlation 1."""
    d = np.array([5.0, 1.0, 3.0, 0.5, 2.0, 4.0])
    views = compression.hessian_beside_adam(np.diag(d), np.sqrt(np.outer(d, np.ones(7)) * 0.3), k=3)
    np.testing.assert_allclose(views["angles_adam"], 0.0, atol=1e-6)
    np.testing.assert_allclose(views["angles_diagonal"], 0.0, atol=1e-6)
    assert views["spearman_diag_adam"] == pytest.approx(1.0)
    np.testing.assert_allclose(views["eigenvalues"], np.sort(d)[::-1] / 5.0)


@pytest.mark.parametrize("theta", [10.0, 35.0, 60.0])
def test_a_rotated_hessian_leaves_the_axes_by_its_angle(theta):
    """H = R diag(9, 1, 1, 1) R^T, R a rotation by theta in the (0, 1) plane: its top eigenvector is
    (cos, sin, 0, 0), and Adam's top axis e_0 (the largest marginal) is theta away from it."""
    t = np.radians(theta)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    h = rot @ np.diag([9.0, 1.0, 1.0, 1.0]) @ rot.T
    adam = np.array([[3.0], [1.0], [1.0], [1.0]])
    views = compression.hessian_beside_adam(h, adam, k=1)
    assert views["angles_adam"][0] == pytest.approx(theta, abs=1e-6)


@pytest.mark.slow
def test_a_trained_runs_layer_beside_its_adam_state(tiny_run):
    from sandbox import analysis
    from sandbox.errors import SandboxError

    run = analysis.load(tiny_run[0])
    views = compression.hessian_beside_adam_of_run(run, "block_0/mlp/down", k=4)
    assert len(views["eigenvalues"]) == len(views["adam"]) == 64  # d_ff inputs of the down projection
    assert views["eigenvalues"][0] == views["adam"][0] == 1.0
    assert np.all((views["angles_adam"] >= 0) & (views["angles_adam"] <= 90)) and len(views["angles_adam"]) == 4
    with pytest.raises(SandboxError, match="choose from"):
        compression.hessian_beside_adam_of_run(run, "block_0/mlp")
