"""The quickstart pipeline, quick variant: train, sharpness, Hessian spectrum, SVD sweep, one HTML page."""

import base64
import re

import pytest

from experiments import registry


@pytest.mark.slow
def test_quickstart_report(tmp_path):
    summary = registry.run("quickstart", tmp_path, quick=True, progress=False)
    assert (tmp_path / "run" / "tokenizer.json").exists()  # trained with BPE
    eig = summary["top_hessian_eigenvalues"]
    assert eig == sorted(eig, reverse=True) and eig[0] > 0
    assert set(summary["sharpness"]) == {20, 40} and all(v > 0 for v in summary["sharpness"].values())
    kept = [r["kept_fraction"] for r in summary["svd"]]
    assert kept == pytest.approx([0.25, 0.5], abs=0.03)
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert f"{summary['final_val_loss']:.4f}" in page
