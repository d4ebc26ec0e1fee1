"""Weight spectra of a model's linear layers: ESD of W^T W, power-law alpha, stable rank, MP edge.

    table, figures = spectra.of_params(params, out_dir, "my model", groups)
"""

from pathlib import Path

from sandbox.compress import report


def table(params, groups: dict | None = None) -> dict:
    """{layer path: {"shape", "alpha", "stable_rank", "spectral_norm", "mp_edge", "n_above_mp", ...}}."""
    return report.spectra_table(params, groups)


def of_params(params, out_dir: Path, title: str, groups: dict | None = None) -> tuple[dict, dict]:
    """(table, {figure file: caption}): singular values, ESD grid and alpha per layer, written into out_dir."""
    esds = report.layer_esds(params, groups)
    rows = report.spectra_table(params, groups, esds)
    names = report.write_spectra_figures(esds, rows, Path(out_dir), title)
    return rows, dict(zip(names, CAPTIONS))


CAPTIONS = (
    "Singular values s_i of each linear layer's weight W, divided by the largest s_1, against the rank "
    "fraction i/K (log scale): a fast decay means W is close to low rank, so SVD compression costs little.",
    "Empirical spectral density of W^T W per layer (eigenvalues lambda_i = s_i^2, log-log histogram), with the "
    "power law p(lambda) ~ lambda^-alpha fitted above x_min by Clauset-Shalizi-Newman (red) and the "
    "Marchenko-Pastur edge sigma^2 (sqrt(M) + sqrt(N))^2 of a random matrix of the same variance (dotted): "
    "eigenvalues past the edge are learned structure.",
    "The fitted power-law exponent alpha per layer; heavy-tailed self-regularization (Martin & Mahoney) finds "
    "alpha in 2..6 (shaded) for well-trained layers, and a random matrix has no power-law tail (large alpha).",
)
