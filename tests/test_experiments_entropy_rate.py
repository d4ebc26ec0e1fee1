"""Entropy rate, quick variant (the default's 600 steps, three checkpoints): the val cross-entropy
ends within 3% of the exact entropy rate, and the KL to the true conditionals falls at every
checkpoint; cross-entropy = entropy + KL holds on the val contexts."""

import pytest

from experiments import registry
from sandbox.text import markov


@pytest.mark.slow
def test_loss_approaches_the_entropy_rate(tmp_path):
    summary = registry.run("entropy_rate", tmp_path, quick=True, progress=False)
    m = summary["measured"]
    exact = markov.entropy_rate(markov.MarkovConfig(order=2, alphabet=4, concentration=0.1, length=50_000))
    assert m["entropy_rate"] == pytest.approx(exact)
    rows = m["kl_over_training"]
    assert [r["step"] for r in rows] == [200, 400, 600]
    kls = [r["kl"] for r in rows]
    assert all(a > b > 0 for a, b in zip(kls, kls[1:]))  # the model's conditionals approach the true ones
    assert kls[-1] < kls[0] / 3
    for r in rows:  # expected cross-entropy = conditional entropy of the val contexts + KL
        assert r["expected_cross_entropy"] - r["kl"] == pytest.approx(exact, abs=0.01)
        assert r["sampled_cross_entropy"] == pytest.approx(r["expected_cross_entropy"], abs=0.03)
    assert 1.0 < m["ratio"] <= 1.03
    assert m["engine_final_val_loss"] > exact  # no model beats the entropy rate
    assert summary["verdict"] == "pass"
    assert (tmp_path / "figures" / "loss.png").stat().st_size > 0
