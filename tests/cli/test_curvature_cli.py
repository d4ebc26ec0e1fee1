"""`sandbox hessian`: refuses bad input with exit 2 and one line; writes a new folder per analysis."""

import json

import pytest

from sandbox import cli


def test_hessian_cli_without_a_run_folder_exits_2(tmp_path, capsys):
    assert cli.main(["hessian", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--num-steps", "0"], "--num-steps: must be an integer in [1,"),
    (["--top-k", "0"], "--top-k: must be an integer in [1,"),
    (["--top-k", "100000000", "--num-steps", "100000000"], "exceeds the operator's dimension"),
    (["--batch-size", "0"], "--batch-size: must be an integer in [1,"),
])
def test_bad_requests_are_refused_before_any_folder(tiny_run, tmp_path, capsys, extra, message):
    out = tmp_path / "h"
    try:
        rc = cli.main(["hessian", str(tiny_run[0]), *extra, "--out", str(out)])
    except SystemExit as e:  # a usage error: argparse's one line
        rc = e.code
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_hessian_writes_a_new_folder_names_its_batch_and_never_overwrites(tiny_run, capsys):
    run_dir, _ = tiny_run
    args = ["hessian", str(run_dir), "--top-k", "2", "--num-steps", "6", "--batch-size", "2"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "[1/1] all: top eigenvalues done" in err  # plain progress lines when not in a terminal
    out = sorted(run_dir.glob("hessian-*"))[-1]
    result = json.loads((out / "hessian.json").read_text())
    assert result["eval_set"] == "val/seed0/2x8x32[:1,:2]"
    assert result["top_eigenvalues"][0] >= result["top_eigenvalues"][1]
    assert (out / "top_eigenvalues.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main([*args, "--out", str(out)]) == 2  # an existing --out needs --force
    assert "--force" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(run_dir)]) == 2  # the run itself is an input: never replaced
    assert cli.main([*args, "--out", str(out), "--force"]) == 0


def test_hessian_prints_every_eigenvalue_asked_for_and_why_a_residual_is_zero():
    from sandbox.cli.hessian import summary_lines

    result = {"eval_set": "val/seed0/1x8x32[:1,:8]", "dim": 4000, "top_eigenvalues": list(range(10, 0, -1)),
              "residuals": [1e-3] * 10, "trace": 55.0,
              "blocks": {"final_norm": {"dim": 5, "method": "dense", "top_eigenvalues": [5, 4, 3, 2, 1],
                                        "residuals": [0.0] * 5},
                         "embed": {"dim": 3000, "method": "lanczos", "top_eigenvalues": [9.0] * 10,
                                   "residuals": [2e-4] * 10}}}
    lines = summary_lines(result, "hessian", 100)
    assert "top 10 eigenvalues (Lanczos, largest first): 10, 9, 8, 7, 6, 5, 4, 3, 2, 1" in lines[1]
    assert "residuals ||A v - lambda v||: at most 0.001" in lines[2] and "trace (Hutch++ estimate): 55" in lines[3]
    assert "final_norm (5 parameters)" in lines[4] and "all 5: the block's dimension" in lines[4]
    assert "exact, from the dense block (residuals 0)" in lines[4] and "Lanczos, residual at most 0.0002" in lines[5]
