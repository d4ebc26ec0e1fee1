"""Every sub-command, given generated bad values (wrong types, signs, sizes, NaN, huge, non-UTF-8 text,
paths to devices, pipes and links to them), exits 0 or 2 with at most two lines on stderr, never a
traceback, leaves no new file or folder when it refuses, and stays within a memory budget.

Commands run in-process through `sandbox.cli.main` (as the shell runs them, argparse included): one
interpreter, so a whole fuzz costs seconds. Each command gets one bad value in one of its arguments,
the rest valid and cheap, so a value the command wrongly accepted would show as work, not pass.
"""

import contextlib
import io
import os
import resource

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.cli import main

INTS = ["-1", "0", "abc", "1.5", "nan", "inf", str(2**63), str(10**30), "", "0x10", "1e400"]
FLOATS = ["nan", "inf", "-inf", "-1", "abc", "1e309", ""]
TEXTS = ["a\udcff", "\udc80", ""]
PATHS = ["/dev/zero", "{pipe}", "{link}", "missing/nowhere", "{folder}", "", "/dev/null"]
OVERRIDE_KEYS = ["train.steps", "train.batch_size", "train.seed", "model.d_model", "model.n_layers", "model.n_heads",
                 "model.seq_len", "optimizer.learning_rate", "optimizer.args.b1", "data.val_fraction",
                 "train.eval_every", "model.vocab_size"]
OVERRIDE_VALUES = ["-1", "0", "nan", "inf", str(2**63), str(10**12), "abc", "[1,2]", "{a: 1}", "null"]
TINY = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.d_ff=64", "model.seq_len=32",
        "train.batch_size=4", "train.eval_batches=1", "train.steps=1", "train.eval_every=1"]

# command -> (valid cheap argv with {slot} placeholders, {slot: pool of bad values})
COMMANDS = {
    "sample": (["sample", "{run}", "--prompt", "ab", "--num-tokens", "2"],
               {"--num-tokens": INTS, "--temperature": FLOATS, "--top-k": INTS, "--top-p": FLOATS, "--seed": INTS,
                "--step": INTS, "-n": ["2", *INTS], "--prompt": TEXTS, "run_dir": PATHS,
                "--regex": ["a**", "[^]", "a*+", "(?>a)", "^a", "(a)\\1", "(a|b)*a(a|b){16}", "a{3,1}", "\udcff"]}),
    "hessian": (["hessian", "{run}", "--out", "out"],
                {"--top-k": INTS, "--num-steps": INTS, "--batch-size": INTS, "--num-probes": INTS,
                 "--num-matvecs": INTS, "--seed": INTS, "--step": INTS, "run_dir": PATHS}),
    "bayes": (["bayes", "{run}", "--out", "out"],
              {"--fit-windows": INTS, "--val-windows": ["1", *INTS], "--num-bins": INTS, "--seed": INTS,
               "--step": INTS, "run_dir": PATHS}),
    "train": (["train", "configs/tiny.yaml", *TINY, "--out", "out"], {"override": OVERRIDE_VALUES, "config": PATHS,
                                                               "--from-step": INTS}),
    "tokenize encode": (["tokenize", "encode", "{tok}", "ab"], {"file": PATHS, "text": TEXTS}),
    "tokenize count": (["tokenize", "count", "{tok}", "ab"], {"file": PATHS, "text": TEXTS}),
    "tokenize train": (["tokenize", "train", "{corpus}", "--vocab-size", "260", "--out", "tok2.json"],
                       {"corpus": PATHS, "--vocab-size": INTS}),
    "launch": (["launch", "--local", "1", "--", "list", "optimizers"], {"--local": INTS, "--port": INTS,
                                                                         "--devices-per-process": INTS}),
    "compress": (["compress", "{run}", "--method", "svd", "--out", "out"],
                 {"--group-size": INTS, "--eval-batches": INTS, "--batch-size": INTS, "--calib-batches": INTS,
                  "--step": INTS, "target": PATHS}),
    "spectra": (["spectra", "{run}", "--out", "out"], {"--step": INTS, "target": PATHS}),
    "numerics": (["numerics", "curvature", "--run", "{run}", "--out", "out"], {"--top-k": INTS, "--run": PATHS}),
    "attention": (["attention", "{run}", "--text", "ab", "--out", "out"], {"--text": TEXTS, "run_dir": PATHS}),
}
POSITIONAL = {"run_dir": 1, "target": 1, "config": 1, "file": 2, "text": 3, "corpus": 2}
MEMORY_BUDGET_KIB = 3 * 2**20  # the whole fuzz may grow this process's peak resident memory by at most 3 GiB


@pytest.fixture(scope="module")
def place(tiny_run, tmp_path_factory):
    from sandbox.text import bpe

    root = tmp_path_factory.mktemp("fuzz")
    os.mkfifo(root / "pipe")
    os.symlink("/dev/zero", root / "link")
    (root / "folder").mkdir()
    (root / "corpus.txt").write_text("ab abc abd " * 40)
    bpe.train("ab abc abd " * 40, 258).save(root / "tok.json")
    names = {"run": str(tiny_run[0]), "pipe": str(root / "pipe"), "link": str(root / "link"),
             "folder": str(root / "folder"), "tok": str(root / "tok.json"), "corpus": str(root / "corpus.txt")}
    return root, names


def _argv(command: str, slot: str, value: str, key: str, names: dict) -> list[str]:
    argv = [a.format(**names) for a in COMMANDS[command][0]]
    if slot == "override":
        argv.insert(2 + len(TINY), f"{key}={value}")  # after the cheap ones: it wins
    elif slot in POSITIONAL:
        argv[POSITIONAL[slot]] = value
    elif slot in argv:
        argv[argv.index(slot) + 1] = value
    else:  # an option not in the valid argv: before `--` (launch's command), else at the end
        at = argv.index("--") if "--" in argv else len(argv)
        argv[at:at] = [slot, value]
    return argv


def _files(root) -> set[str]:
    return {str(p) for p in root.rglob("*")}


CASES = st.sampled_from(sorted(COMMANDS)).flatmap(
    lambda c: st.tuples(st.just(c), st.sampled_from(sorted(COMMANDS[c][1]))).flatmap(
        lambda cs: st.tuples(st.just(cs[0]), st.just(cs[1]), st.sampled_from(COMMANDS[cs[0]][1][cs[1]]),
                             st.sampled_from(OVERRIDE_KEYS))))


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(CASES)
def test_every_command_refuses_bad_values_in_one_or_two_lines_and_writes_nothing(place, tiny_run, case):
    root, names = place
    command, slot, value, key = case
    argv = _argv(command, slot, value, key, names)
    before, run_before = _files(root), _files(tiny_run[0])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code
    finally:
        os.chdir(cwd)
    message = err.getvalue()
    assert rc in (0, 2), (argv, rc, message[-2000:])
    assert "Traceback" not in message and len(message.splitlines()) <= 2, (argv, message[-2000:])
    if rc == 2:
        assert _files(root) == before and _files(tiny_run[0]) == run_before, (argv, _files(root) ^ before)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown < MEMORY_BUDGET_KIB, (argv, grown)
