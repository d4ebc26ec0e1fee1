"""Every registered compression method, through one parametrized test: it checks its settings before
any work, knows whether it needs calibration, compresses every linear layer and labels its rows."""

import jax
import numpy as np
import pytest

from sandbox.compress import methods, quantize, sweep
from sandbox.compress import model as cmodel
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.nn.config import ModelConfig

CFG = ModelConfig(vocab_size=16, seq_len=8, d_model=16, n_layers=1, n_heads=2, d_ff=32)
PARAMS = transformer.init(jax.random.PRNGKey(0), CFG)
# per family: a setting that applies to 16x16 and 16x32 layers, one that cannot, and its label
CASES = {
    "svd": ({"rank": 2}, {"rank": 17}, "rank=2"),
    "quantize": ({"bits": 4, "symmetric": True, "granularity": "group", "group_size": 8},
                 {"bits": 4, "symmetric": True, "granularity": "group", "group_size": 5}, "int4 group(8) sym"),
    "prune": ({"n": 2, "m": 4}, {"n": 2, "m": 5}, "2:4"),
    "integer": ({"bits": 4, "symmetric": True, "granularity": "group", "group_size": 8, "act_order": False},
                {"bits": 4, "symmetric": True, "granularity": "group", "group_size": 5, "act_order": True},
                "int4 group(8) sym"),
}


def _stats():
    batch = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, 16)
    return cmodel.calibrate(lambda p, t: transformer.apply(p, t, CFG), PARAMS, [batch])


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_every_method(name):
    method = methods.get(name)
    good, bad, label = CASES[method.family]
    with pytest.raises(SandboxError):
        sweep.validate(PARAMS, {name: [bad]})
    sweep.validate(PARAMS, {name: [good]})
    layers = cmodel.linear_layers(PARAMS, transformer.param_groups(PARAMS))
    assert len(layers) == 6  # q, k, v, o, up, down: never the embedding
    if method.needs_calibration:
        with pytest.raises(SandboxError, match="needs calibration"):
            method.prepare(layers, None)
    prepared = method.prepare(layers, _stats() if method.needs_calibration else None)
    new, info = method.apply(layers, good, prepared)
    assert set(new) == set(layers)
    assert method.label(good) == label
    if method.family == "svd":  # rank 2 of 16x16 and 16x32: 2 (M + N) weights each
        assert info["kept_fraction"] == pytest.approx(2 * (4 * 32 + 2 * 48) / (4 * 256 + 2 * 512))
        assert all(np.linalg.matrix_rank(np.asarray(p["u"] @ p["v"])) == 2 for p in new.values())
    elif method.family == "prune":
        assert info["kept_fraction"] == pytest.approx(0.5)
    else:  # int4 with one float16 step per group of 8 rows: 4 + 16/8 bits per weight
        assert info["bits_per_weight"] == pytest.approx(4 + quantize.SCALE_BITS / 8) == 6
    rows = sweep.run(PARAMS, name, [good], lambda p: {"n_layers": len(cmodel.linear_layers(p))},
                     stats=_stats() if method.needs_calibration else None)
    assert rows[0]["setting"] == label and rows[0]["n_layers"] == 6


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(SandboxError, match="choose one of svd, svd-whiten, asvd, quantize, prune, gptq, sparsegpt"):
        methods.get("distill")
