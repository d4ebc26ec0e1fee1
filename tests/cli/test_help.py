"""Help that teaches: defaults in every --help, a top-level description for users, `sandbox list` alone,
`sandbox list configs`, `sandbox train ... --dry-run`."""

import argparse

import pytest

from sandbox.cli import build_parser, main
from sandbox.config import CONFIG_DIR


def _parsers(parser, name="sandbox"):
    yield name, parser
    for action in parser._actions:  # argparse keeps its sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                yield from _parsers(p, f"{name} {sub}")


def test_every_option_with_a_default_shows_it_in_help():
    missing = []
    for name, parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for a in parser._actions:
            shown = a.default is not None and a.default is not False and a.default not in (argparse.SUPPRESS, [])
            if shown and a.help and not isinstance(a, argparse._SubParsersAction) and "default" not in a.help:
                if f"(default: {a.default})" not in text:
                    missing.append(f"{name} {a.option_strings or a.dest}")
    assert not missing, missing


def test_top_level_help_speaks_to_users(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "Train small transformer LMs" in out and "one sub-command per file" not in out
    assert "sandbox run quickstart" in out and "compare" in out and "report" in out
    with pytest.raises(SystemExit):
        main(["hessian", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(Lanczos) (default: 10)" in out and "(default: 80)" in out


def test_list_alone_and_list_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(w in out for w in ("configs", "optimizers", "experiments"))
    assert main(["list", "configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) - 1 == len(list(CONFIG_DIR.rglob("*.yaml")))  # one line each, after the heading
    small = next(line for line in lines if "model=small" in line)
    assert "4 layers of width 128" in small


def test_dry_run_prints_the_resolved_config_and_memory_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "configs/tiny.yaml", "model=small", "data.corpus=markov", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "d_model: 128" in out and "n_layers: 4" in out and "memory of one training step, estimated" in out
    assert list(tmp_path.iterdir()) == []
    assert main(["train", "--resume", str(tmp_path), "--dry-run"]) == 2


def test_sample_shows_control_characters_and_long_space_runs_visibly():
    from sandbox.cli.sample import visible

    assert visible(" the matter\n" + " " * 188 + "\x00x\ty") == " the matter\n<188 spaces>\\x00x\ty"
    assert visible("a" + " " * 7 + "b") == "a" + " " * 7 + "b"  # ordinary indentation is left alone
