"""A last-layer (unembedding) Laplace posterior for a trained language model, and its next-token calibration.

The transformer up to its final norm is kept at the MAP and read as features phi_t (one per token);
the unembedding W (D x V; for tied embeddings the output use of E^T) gets a Laplace posterior
(bayes.laplace_head: KFAC or diagonal GGN on training windows). The prior precision is chosen by
held-out NLL on half of a validation batch (the other half is the test), where the temperature of
the temperature-scaling baseline is also fitted; "Laplace (evidence prior)" uses the prior precision
that maximizes the evidence instead. Reported per method (MAP, temperature, Laplace):
top-1 ECE, NLL and Brier score of the next token, and the per-token predictive entropy.
"""

import dataclasses

import jax
import jax.numpy as jnp

from sandbox import bayes
from sandbox.bayes.calibration import bootstrap
from sandbox.bayes.last_layer import PRIOR_GRID
from sandbox.errors import SandboxError
from sandbox.nn import transformer
from sandbox.text.data import as_device, get_batch


def features_and_head(params, tokens_BxL, model_cfg):
    """(phi_NxD after the final norm, W_DxV): logits = phi W for every token position."""
    d = model_cfg.d_model
    untied = dataclasses.replace(model_cfg, tie_embeddings=False)
    head_w = params["embed"]["tokens"].T if model_cfg.tie_embeddings else params["unembed"]["w"]
    probe = {**params, "unembed": {"w": jnp.eye(d, dtype=head_w.dtype)}}  # the identity head returns phi
    phi_BxLxD = transformer.forward_from_embeddings(probe, transformer.embed(params, tokens_BxL, model_cfg), untied)
    return phi_BxLxD.reshape(-1, d), head_w


def _mean_where(x_N, mask_N):
    return float(jnp.sum(jnp.where(mask_N, x_N, 0)) / jnp.maximum(jnp.sum(mask_N), 1))


def _entropy(probs_NxV):
    return -jnp.sum(probs_NxV * jnp.log(jnp.maximum(probs_NxV, 1e-30)), -1)


def lm_laplace(run, *, structure: str = "kron", fit_windows: int = 32, val_windows: int = 32,
               num_bins: int = 15, seed: int = 0):
    """(result dict, {name: probs_NxV on the test half}, labels_N) for the last-layer Laplace of a `Run`."""
    if min(fit_windows, val_windows) < 2:
        raise SandboxError(f"fit_windows ({fit_windows}) and val_windows ({val_windows}) must be >= 2")
    cfg, params, step, data = run.cfg, run.params, run.step, run.data
    k_fit, k_val = jax.random.split(jax.random.key(seed))
    fit = get_batch(as_device(data.train_N), k_fit, fit_windows, cfg.model.seq_len)
    val = get_batch(as_device(data.val_N), k_val, val_windows, cfg.model.seq_len)
    feats = jax.jit(features_and_head, static_argnums=2)
    phi_fit, w = feats(params, fit["inputs"], cfg.model)
    phi_val, _ = feats(params, val["inputs"], cfg.model)
    labels_val = val["targets"].reshape(-1)
    half = (val_windows // 2) * cfg.model.seq_len  # tune on the first half, test on the second
    post = bayes.laplace_head(phi_fit, fit["targets"].reshape(-1), w, structure=structure)
    evidence_delta = float(post.optimize_prior_precision(steps=200).prior_precision)
    post = bayes.tune_prior(post, phi_val[:half], labels_val[:half])
    logits = phi_val @ w
    temperature = float(bayes.fit_temperature(logits[:half], labels_val[:half]))
    test, labels = slice(half, None), labels_val[half:]
    probs = {"MAP": jax.nn.softmax(logits[test]), "temperature": jax.nn.softmax(logits[test] / temperature),
             "Laplace": bayes.head_predictive(post, phi_val[test])[0],
             "Laplace (evidence prior)": bayes.head_predictive(post.replace(prior_precision=evidence_delta),
                                                               phi_val[test])[0]}
    metrics = {name: {"ece": float(bayes.ece(p, labels, num_bins)), "nll": float(bayes.nll(p, labels)),
                      "brier": float(bayes.brier(p, labels)), "accuracy": float(jnp.mean(jnp.argmax(p, -1) == labels)),
                      "mean_confidence": float(jnp.mean(jnp.max(p, -1))), "mean_entropy": float(jnp.mean(_entropy(p)))}
               for name, p in probs.items()}
    for name, p in probs.items():  # error bars: bootstrap over the test tokens
        se = bootstrap(p, labels, jax.random.fold_in(jax.random.key(seed), 7), num_bins=num_bins)
        metrics[name].update({f"{k}_se": float(v) for k, v in se.items()})
    gap = _entropy(probs["Laplace"]) - _entropy(probs["MAP"])
    wrong = jnp.argmax(probs["MAP"], -1) != labels
    result = {
        "run_dir": str(run.path), "step": step, "structure": structure, "vocab_size": int(w.shape[1]),
        "d_model": int(w.shape[0]), "head_parameters": int(w.size), "fit_tokens": int(phi_fit.shape[0]),
        "tune_tokens": int(half), "test_tokens": int(labels.size),
        "windows": f"fit: {fit_windows} train-split windows, tune/test: {val_windows} val-split windows "
                   f"(key {seed}; not the run's eval set {run.eval_set.name})", "prior_precision": post.prior_precision,
        "evidence_prior_precision": evidence_delta,
        "log_marginal_likelihood_at_evidence_prior": float(post.log_marginal_likelihood(evidence_delta)),
        "temperature": temperature, "metrics": metrics,
        "prior_grid": f"{len(PRIOR_GRID)} values log-spaced on [{PRIOR_GRID[0]:g}, {PRIOR_GRID[-1]:g}]",
        "prior_at_grid_edge": _edge(post.prior_precision),
        "entropy_gain": {"mean": float(jnp.mean(gap)), "on_map_errors": _mean_where(gap, wrong),
                         "on_map_hits": _mean_where(gap, ~wrong)},
    }
    return result, probs, labels


def _edge(delta: float) -> str | None:
    """Which end of the prior grid `delta` is at ("lower", "upper"), or None inside it: at an edge the
    held-out NLL was still falling there, so the best prior may lie beyond the grid."""
    return {float(PRIOR_GRID[0]): "lower", float(PRIOR_GRID[-1]): "upper"}.get(float(delta))


def entropy_figure(probs: dict, labels_N):
    """Per-token predictive entropy of Laplace against MAP's (nats), MAP errors and hits apart."""
    from sandbox import plotting

    h_map, h_lap = _entropy(probs["MAP"]), _entropy(probs["Laplace"])
    wrong = jnp.argmax(probs["MAP"], -1) != labels_N
    fig, ax = plotting.figure(5.0, 4.5)
    ax.scatter(h_map[~wrong], h_lap[~wrong], s=3, alpha=0.5, label="MAP top-1 right")
    ax.scatter(h_map[wrong], h_lap[wrong], s=3, alpha=0.5, label="MAP top-1 wrong")
    top = float(max(jnp.max(h_map), jnp.max(h_lap)))
    ax.plot([0, top], [0, top], color="gray", linestyle="--", linewidth=1, label="equal entropy")
    ax.set(xlabel="MAP predictive entropy (nats)", ylabel="Laplace predictive entropy (nats)",
           title="next-token entropy: last-layer Laplace vs MAP")
    ax.legend(fontsize=8)
    return fig
