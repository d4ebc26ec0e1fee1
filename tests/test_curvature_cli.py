"""`sandbox hessian` refuses a folder that is not a run, with exit 2 and one line (no traceback)."""

from sandbox import cli
from sandbox.cli.hessian import block_names


def test_hessian_cli_without_a_run_folder_exits_2(tmp_path, capsys):
    assert cli.main(["hessian", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and "Traceback" not in err


def test_block_names_cover_layers_and_their_attention_and_mlp():
    params = {"embed": {"tokens": 0}, "block_0": {"attn": {}, "mlp": {}, "norm_attn": {}},
              "norm_final": {}}
    assert block_names(params) == ["embed", "block_0", "block_0/attn", "block_0/mlp", "norm_final"]
