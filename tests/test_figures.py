"""Every figure renders, and says what it shows: titles that name the quantity, one panel per block, stated
kernel widths, line styles that keep coinciding curves apart, colour ranges fixed by the quantity, integer
layer and head axes. Read back from each PNG's text chunks (`plotting.labels`) or from the figure itself."""

import json

import numpy as np
from PIL import Image

from sandbox import bayes, plotting
from sandbox.analysis import figures
from sandbox.analysis.attention import report as attention
from sandbox.compress import report as compress_report


def _said(path) -> dict:
    return json.loads(Image.open(path).text["Description"])


def _density(center: float) -> dict:
    grid = np.linspace(center - 1, center + 1, 50)
    return {"grid": grid.tolist(), "values": np.exp(-((grid - center) ** 2) / 0.02).tolist(), "sigma": 0.02}


def test_curvature_figures_one_panel_per_block_and_the_kernel_width_stated(tmp_path):
    blocks = {name: {"dim": 10 * (i + 1), "method": "dense" if i % 2 else "lanczos", "top_eigenvalues": [1.0],
                     "residuals": [0.0], "density": _density(i)}
              for i, name in enumerate(["embed", "block_0/attn", "block_0/mlp", "block_0/norm1", "final_norm"])}
    result = {"operator": "hessian", "top_eigenvalues": [3.0, 2.0], "residuals": [0.0, 0.0], "dim": 150,
              "eval_set": "val/seed0/1x2x8", "density": _density(0.5), "blocks": blocks}
    captions = figures.curvature(result, tmp_path)
    assert set(captions) == {"top_eigenvalues.png", "density.png", "blocks_density.png"}
    said = _said(tmp_path / "blocks_density.png")
    assert [a["title"].split(" (")[0] for a in said["axes"]] == list(blocks)  # small multiples, in order
    assert "(20 params, dense)" in said["axes"][1]["title"] and "each parameter block" in said["title"]
    assert "width sigma = 0.02" in captions["density.png"]
    assert _said(tmp_path / "density.png")["axes"][0]["title"] == "Hessian spectral density, all parameters"


def test_reliability_curves_that_coincide_stay_distinguishable():
    probs = np.full((40, 2), 0.5)
    probs[:20] = [0.9, 0.1]
    labels = np.zeros(40, int)
    fig = bayes.reliability_diagram({"MAP": probs, "Laplace": probs}, labels, num_bins=5)
    lines = [line for line in fig.axes[0].lines if line.get_label() in ("MAP", "Laplace")]
    np.testing.assert_array_equal(lines[0].get_xydata(), lines[1].get_xydata())  # the same curve ...
    assert lines[0].get_linestyle() != lines[1].get_linestyle()                # ... drawn two ways
    assert lines[0].get_marker() != lines[1].get_marker()


def test_attention_maps_on_their_quantitys_range_with_integer_layer_and_head_ticks():
    rng = np.random.default_rng(0)
    n, h, l = 2, 3, 5
    scores = rng.normal(size=(n, h, l, l)) + np.where(np.tril(np.ones((l, l))), 0, -np.inf)
    att = np.exp(scores - scores.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    figs = attention.make_figures(att, [f"t{i}" for i in range(l)], attention.analyse(att))
    markov = figs["markov.png"]
    heat = [ax for ax in markov.axes if ax.images]
    assert [ax.images[0].get_clim() for ax in heat] == [(0.0, 1.0)] * 3
    for ax in heat:
        assert list(ax.get_yticks()) == list(range(n)) and list(ax.get_xticks()) == list(range(h))
    assert "absorbing" in heat[2].get_title()
    entropy = [ax for ax in figs["entropy.png"].axes if ax.images][0]
    assert entropy.images[0].get_clim() == (0.0, float(np.log(l)))


def test_titles_name_the_quantity_before_the_model(tmp_path):
    w = np.random.default_rng(0).normal(size=(24, 16))
    params = {"layer": {"kernel": w}}
    esds = compress_report.layer_esds(params, {"linear": ["layer/kernel"]})
    rows = compress_report.spectra_table(params, {"linear": ["layer/kernel"]}, esds)
    names = compress_report.write_spectra_figures(esds, rows, tmp_path, "tiny")
    titles = [_said(tmp_path / name)["title"] or _said(tmp_path / name)["axes"][0]["title"] for name in names]
    assert all(not t.startswith("tiny") and "(tiny)" in t for t in titles), titles
    fig, ax = plotting.figure()
    ax.set(title="t", xlabel="x", ylabel="y")
    plotting.save(fig, tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").text["Title"] == "t"
