"""The quickstart pipeline, quick variant: train, sharpness, Hessian spectrum, SVD sweep, one HTML page."""

import base64
import re

import numpy as np
import pytest
from sandbox.experiments import registry


@pytest.mark.slow
def test_quickstart_report(tmp_path):
    summary = registry.run("quickstart", tmp_path, quick=True, progress=False)
    assert (tmp_path / "run" / "tokenizer.json").exists()  # trained with BPE
    eig = summary["top_hessian_eigenvalues"]
    assert eig == sorted(eig, reverse=True) and eig[0] > 0
    assert set(summary["sharpness"]) == {20, 40} and all(v > 0 for v in summary["sharpness"].values())
    kept = [r["kept_fraction"] for r in summary["svd"]]
    assert kept == pytest.approx([0.25, 0.5], abs=0.03)
    # one eval set: compression's uncompressed baseline is training's final val loss
    assert summary["baseline_val_loss"] == pytest.approx(summary["final_val_loss"], rel=1e-5)
    assert summary["eval_set"] == "val/seed0/8x16x32"
    assert summary["hessian_eval_set"] == "val/seed0/8x16x32[:1,:8]"
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 8 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    for name in ("sharpness.png", "compress/esd.png", "compress/alpha.png"):
        assert name in summary["figures"]
    captions = re.findall(r"<figcaption>([^<]+)</figcaption>", page)
    assert len(captions) == 8 and all(len(c) > 80 and "/" not in c.split()[0] for c in captions)
    assert "2/eta" in summary["captions"]["sharpness.png"]
    # the one result layout: the model learnt (val loss below ln V) at its seed
    (seed,) = summary["per_seed"]
    assert summary["seeds"] == [0] and seed["measured"]["uniform_loss"] == pytest.approx(np.log(300))
    assert seed["measured"]["final_val_loss"] == pytest.approx(summary["final_val_loss"], rel=1e-5)
    assert seed["verdict"] == summary["verdict"] == "pass"
    assert f"{summary['final_val_loss']:.4f}" in page
    assert "git commit" in page and "sandbox version" in page and "resolved config" in page  # provenance
    # every row of the summary table names what it was measured on
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page)
    assert len(rows) == 6 + len(summary["svd"]) and all(m.strip() for _, _, m in rows)
    whole_set = re.compile(r"eval set val/seed0/8x16x32(?!\[)")
    assert sum(bool(whole_set.search(m)) for _, _, m in rows) == 2 + len(summary["svd"])
