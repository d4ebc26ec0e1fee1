"""Floating point: format constants, rounding, summation bounds, naive vs stable ops, finite differences."""

import json
import re

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from sandbox.cli import main
from sandbox.numerics import errors, finite_diff, formats, rounding


@pytest.mark.parametrize("name", formats.NAMES)
def test_format_constants_equal_finfo(name):
    f, ref = formats.describe(name), ml_dtypes.finfo(formats.dtype(name))
    assert (f.exponent_bits, f.mantissa_bits, f.bits) == (ref.nexp, ref.nmant, ref.bits)
    assert f.eps == float(ref.eps) and f.unit_roundoff == float(ref.eps) / 2
    assert f.smallest_normal == float(ref.smallest_normal)
    assert f.smallest_subnormal == float(ref.smallest_subnormal)
    assert f.largest_finite == float(ref.max) == float(jnp.finfo(formats.dtype(name)).max)


@pytest.mark.parametrize("name", ["bfloat16", "float16", "float8_e4m3", "float8_e5m2"])
def test_positive_values_count_and_spacing(name):
    e, m, ieee = formats.LAYOUT[name]
    # normal: every exponent but 0 (and the top one in IEEE formats) x 2^m mantissas; subnormal: 2^m - 1
    expected = ((2**e - 2) * 2**m if ieee else (2**e - 1) * 2**m - 1) + 2**m - 1
    values = formats.positive_values(name)
    assert values.size == expected
    assert values.max() == formats.describe(name).largest_finite
    np.testing.assert_array_equal(np.diff(values), np.asarray(formats.spacing(values[:-1], name)))


def test_round_nearest_within_unit_roundoff():
    x = jax.random.uniform(jax.random.PRNGKey(0), (10_000,), jnp.float32, 1e-3, 1e3)
    for name in ("bfloat16", "float16"):
        err = rounding.relative_error(rounding.round_nearest(x, formats.dtype(name)), x)
        u = formats.describe(name).unit_roundoff
        assert err.max() <= u and err.max() > 0.9 * u
        assert rounding.ulp_error(rounding.round_nearest(x, formats.dtype(name)), x, name).max() <= 0.5


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_stochastic_rounding_unbiased_with_theoretical_variance(name):
    dt, n = formats.dtype(name), 20_000
    x = jnp.asarray([1.0 + 2**-12, 3.3, -0.7071, 1e-3, 2.0], jnp.float32)
    draws = jax.vmap(lambda k: rounding.round_stochastic(k, x, dt))(jax.random.split(jax.random.PRNGKey(1), n))
    draws = np.asarray(draws, np.float64)
    var = np.asarray(rounding.stochastic_variance(x, dt), np.float64)
    se = np.sqrt(np.maximum(var, 1e-30) / n)
    assert np.all(np.abs(draws.mean(0) - np.asarray(x, np.float64)) < 4 * se)
    assert var[-1] == 0 and draws[:, -1].std() == 0  # 2.0 is representable: SR leaves it alone
    lo, hi = (np.asarray(b, np.float64)[:-1] for b in rounding.neighbours(x, dt))
    p = (np.asarray(x, np.float64)[:-1] - lo) / (hi - lo)  # P(round up); Var = gap² p(1-p)
    rel_se = np.abs(1 - 2 * p) / np.sqrt(n * p * (1 - p)) + 1 / np.sqrt(n)  # delta method, + sampling of the var
    assert np.all(np.abs(draws[:, :-1].var(0) / var[:-1] - 1) < 4 * rel_se)
    rne = np.asarray(rounding.round_nearest(x, dt), np.float64)
    assert np.any(np.abs(rne - np.asarray(x, np.float64)) > 10 * se)  # nearest rounding is biased here


def test_stochastic_rounding_keeps_small_updates_that_nearest_loses():
    keys = jax.random.split(jax.random.PRNGKey(2), 1000)

    def accumulate(round_fn):
        body = lambda w, k: (round_fn(k, w.astype(jnp.float32) + 1e-3), None)
        return float(jax.lax.scan(body, jnp.ones((), jnp.bfloat16), keys)[0])

    assert accumulate(lambda k, v: v.astype(jnp.bfloat16)) == 1.0  # 1e-3 < ulp(1)/2: every update is lost
    assert abs(accumulate(lambda k, v: rounding.round_stochastic(k, v, jnp.bfloat16)) - 2.0) < 0.2


def test_summation_errors_against_bounds():
    rows = {r["n"]: r for r in errors.summation_errors("float32", sizes=(100_000,))}
    r = rows[100_000]
    assert r["kahan"] <= r["bound_kahan"] < r["naive"] <= r["bound_naive"]
    assert r["pairwise"] <= r["bound_pairwise"]
    bf = errors.summation_errors("bfloat16", sizes=(10_000,))[0]
    assert bf["naive"] > 0.5 and bf["kahan"] <= bf["bound_kahan"]  # naive bf16 stagnates; Kahan does not
    with jax.enable_x64(True):  # kahan_add recovers the exact low part: the two-sum identity
        t, c = rounding.kahan_add(jnp.float64(1.0), jnp.float64(0.0), jnp.float64(1e-17))
        assert float(t) == 1.0 and float(c) == -1e-17


def test_naive_softmax_overflows_where_theory_says_stable_never():
    ln_max = np.log(formats.describe("float16").largest_finite)
    point = errors.overflow_point("float16", "softmax")
    assert ln_max <= point <= ln_max + float(formats.spacing(ln_max, "float16"))
    assert errors.overflow_point("float16", "logsumexp", stable=True) is None
    x = jnp.asarray([[12.0, 0.0, -3.0]], jnp.float16)
    with jax.enable_x64(True):
        exact = np.asarray(jax.nn.softmax(jnp.asarray([[12.0, 0.0, -3.0]], jnp.float64)))
    assert not np.isfinite(np.asarray(errors.softmax(x, False), np.float32)).all()
    normwise = np.abs(np.asarray(errors.softmax(x, True), np.float64) - exact).max() / np.abs(exact).max()
    assert normwise < 2 * formats.describe("float16").eps  # (exp(-15) is subnormal in float16: elementwise is worse)


def test_stable_layer_norm_survives_a_large_mean_where_one_pass_does_not():
    x = 300.0 + jax.random.normal(jax.random.PRNGKey(3), (4, 256))
    with jax.enable_x64(True):
        exact = np.asarray(errors.layer_norm(jnp.asarray(np.asarray(x.astype(jnp.bfloat16), np.float64)), True))
    naive = np.asarray(errors.layer_norm(x.astype(jnp.bfloat16), False), np.float64)
    stable = np.asarray(errors.layer_norm(x.astype(jnp.bfloat16), True), np.float64)
    assert np.abs(naive - exact).max() > 1.0 > 0.2 > np.abs(stable - exact).max()


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_finite_difference_optimum_within_10x_of_theory(name):
    sweep = finite_diff.step_sweep(jnp.exp, np.linspace(0.5, 1.5, 16), name, 10.0 ** np.linspace(-13, 0, 53))
    best, theory = finite_diff.best_steps(sweep), finite_diff.theory_steps(name)
    u = formats.describe(name).unit_roundoff
    for method in ("forward", "central"):
        assert theory[method] / 10 <= best[method]["best_h"] <= theory[method] * 10
    assert best["forward"]["best_error"] < 10 * np.sqrt(u) and best["central"]["best_error"] < 10 * u ** (2 / 3)
    assert best["complex_step"]["best_error"] < 10 * u  # no subtraction, no rounding floor


def test_gradient_check_passes_true_gradients_and_catches_a_wrong_one():
    @jax.custom_jvp
    def bad_tanh(x):
        return jnp.tanh(x)

    bad_tanh.defjvp(lambda p, t: (jnp.tanh(p[0]), 1.1 * (1 - jnp.tanh(p[0]) ** 2) * t[0]))

    def make_loss(act):
        return lambda p, b: jnp.mean((act(b["x"] @ p["w"]) @ p["v"] - b["y"]) ** 2)

    with jax.enable_x64(True):
        k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(4), 4)
        params = {"w": jax.random.normal(k1, (5, 7), jnp.float64), "v": jax.random.normal(k2, (7,), jnp.float64)}
        batch = {"x": jax.random.normal(k3, (16, 5), jnp.float64), "y": jax.random.normal(k4, (16,), jnp.float64)}
        good = finite_diff.gradient_check(make_loss(jnp.tanh), params, batch, jax.random.PRNGKey(5))
        bad = finite_diff.gradient_check(make_loss(bad_tanh), params, batch, jax.random.PRNGKey(5))
    assert good["max_rel_error"] < 1e-7
    assert bad["max_rel_error"] > 1e-3


def test_cli_formats_writes_table_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "fmt"
    assert main(["numerics", "formats", "--out", str(out)]) == 0
    rows = {r["name"]: r for r in json.loads((out / "formats.json").read_text())["formats"]}
    assert rows["float16"]["largest_finite"] == 65504.0 and rows["float8_e4m3"]["largest_finite"] == 448.0
    assert (out / "formats.png").stat().st_size > 10_000
    assert "65504" in capsys.readouterr().out.replace("6.55e+04", "65504")
    assert main(["numerics", "formats", "--out", str(out)]) == 2  # refuses to overwrite without --force


def test_cli_formats_without_out_makes_a_new_timestamped_folder_each_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default folder is relative to where the command runs
    assert main(["numerics", "formats"]) == 0 and main(["numerics", "formats"]) == 0
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(made) == 2 and all(re.fullmatch(r"numerics-formats-\d{8}-\d{6}(-2)?", n) for n in made), made


def test_top_hessian_eigenvalues_degrade_with_the_hvp_format():
    from sandbox.numerics.curvature_precision import top_eigenvalues_by_format

    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(6), 4)
    params = {"w": jax.random.normal(k1, (6, 8)) / 2, "v": jax.random.normal(k2, (8,)) / 3}
    batch = {"x": jax.random.normal(k3, (32, 6)), "y": jax.random.normal(k4, (32,))}
    loss = lambda p, b: jnp.mean((jnp.tanh(b["x"] @ p["w"]) @ p["v"] - b["y"]) ** 2)
    out = top_eigenvalues_by_format(loss, params, batch, jax.random.PRNGKey(7), k=4, num_steps=56)
    err = {name: out[name]["sharpness_rel_error"] for name in ("float32", "bfloat16", "float16")}
    assert err["float32"] < 1e-4  # Lanczos with all 56 steps is exact up to float32 HVPs
    assert err["float32"] < err["float16"] < err["bfloat16"] < 0.1  # error ordered by unit roundoff
    for name in ("bfloat16", "float16"):  # each top eigenvalue within a few u·lambda_max (Weyl)
        gaps = np.abs(np.asarray(out[name]["eigenvalues"]) - np.asarray(out["float64"]))
        assert gaps.max() < 2 * out[name]["weyl_scale"]


def test_numerics_curvature_report_of_a_run(tiny_run, tmp_path, capsys):
    from sandbox.cli import main

    run_dir, _ = tiny_run
    assert main(["numerics", "curvature", "--out", str(tmp_path / "x")]) == 2  # no --run: refused, nothing written
    assert main(["numerics", "formats", "--run", str(run_dir), "--out", str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    out = tmp_path / "curv"
    assert main(["numerics", "curvature", "--run", str(run_dir), "--top-k", "3", "--out", str(out)]) == 0
    top = json.loads((out / "curvature.json").read_text())["top_eigenvalues"]
    ref = np.asarray(top["float64"])
    assert len(ref) == 3 and np.all(np.diff(ref) <= 0) and ref[0] > 0
    assert max(top["float32"]["rel_error"]) < 1e-4  # float32 HVPs: the float64 spectrum to float32 accuracy
    assert not top["bfloat16"]["nonfinite"]  # bf16 has float32's range: its HVPs cannot overflow here
    for name in ("bfloat16", "float16"):  # low-precision HVPs move each eigenvalue by a few u * lambda_max (Weyl)
        if top[name]["nonfinite"]:  # fp16 overflowed (seen on this 4-step run: small activations, 1/sigma^3 terms)
            assert top[name]["survived"] == 0 and top[name]["eigenvalues"] is None
            continue
        gaps = np.abs(np.asarray(top[name]["eigenvalues"]) - ref)
        assert 0 < gaps.max() < 4 * top[name]["weyl_scale"], (name, gaps, top[name]["weyl_scale"])
        assert top[name]["survived"] == sum(e < 0.1 for e in top[name]["rel_error"])
    assert (out / "curvature_precision.png").stat().st_size > 10_000
    assert "bfloat16" in capsys.readouterr().out
    # one default analysis batch: `hessian` answers about the same function and prints the same lambda_1
    assert main(["hessian", str(run_dir), "--top-k", "3", "--num-steps", "40", "--out", str(tmp_path / "h")]) == 0
    hessian = json.loads((tmp_path / "h" / "hessian.json").read_text())
    curv = json.loads((out / "curvature.json").read_text())
    assert hessian["eval_set"] == curv["eval_set"] == "val/seed0/2x8x32[:1,:8]"
    assert abs(hessian["top_eigenvalues"][0] - ref[0]) < 1e-4 * ref[0]
    assert f"{ref[0]:.4g}" in capsys.readouterr().out


def test_numerics_fd_report_best_steps_near_theory(tmp_path, capsys):
    out = tmp_path / "fd"
    assert main(["numerics", "fd", "--out", str(out)]) == 0
    best = json.loads((out / "fd.json").read_text())["best"]
    for name in ("float32", "float64"):  # the measured best h within a factor 10 of sqrt(u) / cbrt(u) theory
        for method in ("forward", "central"):
            h, theory = best[name]["measured"][method]["best_h"], best[name]["theory_h"][method]
            assert theory / 10 <= h <= theory * 10, (name, method, h, theory)
    # central beats forward at its best h, and the complex step has no rounding floor: near u itself
    assert best["float64"]["measured"]["central"]["best_error"] < best["float64"]["measured"]["forward"]["best_error"]
    assert best["float64"]["measured"]["complex_step"]["best_error"] < 1e-15
    assert (out / "finite_differences.png").stat().st_size > 10_000
    assert "complex_step" in capsys.readouterr().out
