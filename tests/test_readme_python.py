"""The README's "Use it from Python" section runs as written, and its numbers are the ones it claims."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _snippets() -> list[str]:
    text = README.read_text()
    section = text.split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_the_run_and_the_flax_examples():
    snippets = _snippets()
    assert len(snippets) == 2
    flax_lines = [line for line in snippets[1].splitlines() if line.strip()]
    assert len(flax_lines) <= 10  # "in ten lines"


def test_run_snippet(tiny_run, tmp_path, capsys):
    run_dir, trained = tiny_run
    scope = {"RUN_DIR": run_dir, "OUT_DIR": tmp_path}
    exec(_snippets()[0], scope)
    assert scope["run"].eval_set.name == trained["eval_set"]
    assert scope["summary"]["base"]["val_loss"] == pytest.approx(trained["final_val_loss"], rel=1e-6)
    eig = scope["result"]["top_eigenvalues"]
    assert eig == sorted(eig, reverse=True) and eig[0] > 0
    assert trained["eval_set"] in capsys.readouterr().out
    assert scope["result"]["eval_set"] == scope["run"].analysis_set().name == trained["eval_set"] + "[:1,:8]"
    assert [len(ids) for ids in scope["out"]["ids"]] == [32, 32] and scope["out"]["prompt_ids"][:4] == [
        int(t) for t in scope["run"].eval_set.batch(0)["inputs"][0, :4]]


def test_flax_snippet(capsys):
    scope = {}
    exec(_snippets()[1], scope)
    result = scope["result"]
    assert set(result["blocks"]) == {"Dense_0", "LayerNorm_0", "Dense_1"}
    # a diagonal block's top eigenvalue never exceeds the whole Hessian's (Cauchy interlacing)
    top = result["top_eigenvalues"][0]
    assert all(b["top_eigenvalues"][0] <= top * (1 + 1e-4) for b in result["blocks"].values())
    assert np.all(np.diff(result["top_eigenvalues"]) <= 1e-6)


def _elsewhere() -> dict[str, str]:
    """The README's other Python snippets, by the section they are in."""
    found = {}
    for section in README.read_text().split("\n## ")[1:]:
        title = section.splitlines()[0]
        if title != "Use it from Python":
            for i, code in enumerate(re.findall(r"```python\n(.*?)```", section, re.S)):
                found[f"{title} #{i}"] = code
    return found


@pytest.mark.slow  # compiling a dozen small programs: about 20 s with a warm compile cache, minutes cold
def test_every_other_snippet_runs_as_written():
    snippets = _elsewhere()
    assert len(snippets) == 3, list(snippets)
    scopes = {}
    for name, code in snippets.items():
        scopes[name] = {}
        exec(code, scopes[name])
    regex, bayes, curvature = scopes.values()
    allowed = np.flatnonzero(np.asarray(regex["mask_V"]))
    assert [chr(t) for t in allowed] == list("0123456789") and not regex["index"].is_final(regex["state"])
    probs = np.asarray(bayes["probs_NxC"])
    assert probs.shape == (200, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.isfinite(float(bayes["lml"]))
    exact = np.linalg.eigvalsh(np.asarray(curvature["exact"], np.float64))
    np.testing.assert_allclose(np.asarray(curvature["eigvals"]), exact[::-1][:5], rtol=2e-3)
    trace = float(np.trace(curvature["exact"]))
    assert abs(float(curvature["estimate"]) - trace) < 0.5 * abs(trace) + 1e-3
