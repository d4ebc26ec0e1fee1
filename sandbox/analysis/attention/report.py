"""`sandbox attention`: capture a model's attention on a text, analyse it as graphs, write figures.

The model is a trained run (the decoder LM and its tokenizer) or "minilm" (the pretrained
encoder). Flow solves L^2 max-flow problems, so texts are cut to MAX_TOKENS tokens.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sandbox import plotting, rundir
from sandbox.analysis.attention.capture import lm_attention, minilm_attention
from sandbox.analysis.attention.graphs import flow, markov_summary, rollout, row_entropy, with_residual
from sandbox.errors import SandboxError

MAX_TOKENS = 24


def capture_text(source, text: str):
    """(att_NxHxLxL float64, token labels) of `text` under a run's LM or under "minilm"."""
    if not text:
        raise SandboxError("--text must not be empty")
    if str(source) == "minilm":
        from sandbox.pretrained import minilm

        model = minilm.load()
        ids, mask = model.tokenize([text])
        length = min(int(mask.sum()), MAX_TOKENS)
        ids, mask = ids[:, :length], mask[:, :length]
        _, att = jax.jit(minilm_attention, static_argnames="cfg")(model.params, jnp.asarray(ids), jnp.asarray(mask),
                                                                  model.cfg)
        labels = [model.tokenizer.id_to_token(int(i)) for i in ids[0]]
    else:
        from sandbox.analysis.run import load

        run = load(source)
        cfg, params, tok = run.cfg, run.params, run.tokenizer
        ids = tok.encode(text)[: min(MAX_TOKENS, cfg.model.seq_len)]
        if not ids or max(ids) >= cfg.model.vocab_size:
            raise SandboxError(f"the text holds symbols outside this run's vocabulary of {cfg.model.vocab_size}")
        _, att = jax.jit(lm_attention, static_argnames="cfg")(params, jnp.asarray([ids]), cfg.model)
        labels = [tok.decode([i]) for i in ids]
    return np.asarray(att[:, 0], np.float64), labels


def analyse(att_NxHxLxL) -> dict:
    """Entropy and Markov statistics per head; rollout and flow of the head-averaged layers."""
    mean_NxLxL = att_NxHxLxL.mean(axis=1)
    return {"entropy": row_entropy(att_NxHxLxL), **markov_summary(att_NxHxLxL),
            "rollout": rollout(mean_NxLxL), "flow": flow(mean_NxLxL)}


def _heatmap(ax, data, title, xlabel, ylabel, labels=None, vmin=0.0, vmax=1.0):
    """A heat map on the colour range [vmin, vmax] the quantity can take (fractions and gaps: [0, 1]), so equal
    colours mean equal values across figures and rounding noise shows as no colour at all; integer ticks for
    layers and heads, the tokens' text for token axes."""
    im = ax.imshow(np.asarray(data), cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(False)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    else:
        ax.set_xticks(range(np.shape(data)[1]))
        ax.set_yticks(range(np.shape(data)[0]))
    ax.figure.colorbar(im, ax=ax, shrink=0.8)


def _graph_figure(att_NxHxLxL, labels, threshold: float = 0.1):
    """The layered graph drawn with networkx: edge (l, j) -> (l+1, i) of weight A~_l[i, j] > threshold."""
    import networkx as nx

    mixed = with_residual(att_NxHxLxL.mean(axis=1))
    graph = nx.DiGraph()
    n, length = mixed.shape[0], mixed.shape[-1]
    for l in range(n + 1):
        graph.add_nodes_from((l, i) for i in range(length))
    for l, a in enumerate(mixed):
        graph.add_weighted_edges_from(((l, j), (l + 1, i), a[i, j]) for i in range(length) for j in range(length)
                                      if a[i, j] > threshold)
    fig, ax = plotting.figure(max(6.0, 0.45 * length), 0.7 * (n + 1) + 1.5)
    pos = {(l, i): (i, l) for l, i in graph.nodes}
    weights = [graph.edges[e]["weight"] for e in graph.edges]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=40, node_color="C0")
    nx.draw_networkx_edges(graph, pos, ax=ax, width=[2.5 * w for w in weights], alpha=0.6, arrows=False)
    ax.tick_params(left=True, bottom=True, labelleft=True, labelbottom=True)
    ax.set_xticks(range(length), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n + 1))
    ax.set(ylabel="layer (0 = input)", title=f"attention graph, head mean with residual (edges > {threshold})")
    return fig


def make_figures(att_NxHxLxL, labels, stats: dict) -> dict:
    """{file name: figure}: entropy, Markov statistics, each layer's weights, rollout and flow, the graph."""
    figs = {}
    fig, ax = plotting.figure(5, 3.5)
    length = att_NxHxLxL.shape[-1]
    _heatmap(ax, stats["entropy"], f"attention entropy per head (nats; max log {length} = {np.log(length):.2f})",
             "head", "layer", vmax=float(np.log(length)))
    figs["entropy.png"] = fig
    fig, axes = plotting.figure(13, 3.5, ncols=3)
    titles = ("spectral gap 1 - |lambda_2|", "mean attention to token 0",
              "stationary mass on token 0\n(1 for every causal head: token 0 is absorbing)")
    for ax, key, title in zip(axes, ("spectral_gap", "first_token_mass", "stationary_first"), titles):
        _heatmap(ax, stats[key], title, "head", "layer")
    figs["markov.png"] = fig
    n = att_NxHxLxL.shape[0]
    fig, axes = plotting.figure(4.2 * n, 4, ncols=n)
    for l, ax in enumerate(np.atleast_1d(axes)):
        _heatmap(ax, att_NxHxLxL[l].mean(axis=0), f"layer {l}: head mean", "key", "query", labels)
    figs["layers.png"] = fig
    fig, axes = plotting.figure(10, 4.5, ncols=2)
    _heatmap(axes[0], stats["rollout"], "attention rollout", "input token", "output token", labels,
             vmax=float(np.max(stats["rollout"])))
    _heatmap(axes[1], stats["flow"], "attention flow (max-flow)", "input token", "output token", labels,
             vmax=float(np.max(stats["flow"])))
    figs["rollout_flow.png"] = fig
    figs["graph.png"] = _graph_figure(att_NxHxLxL, labels)
    return figs


def attention_report(source, text: str, out_dir, force: bool = False) -> dict:
    """Capture, analyse and write figures and summary.json into `out_dir` (a folder the sandbox owns)."""
    from sandbox.train import records

    att, labels = capture_text(source, text)
    stats = analyse(att)
    figs = make_figures(att, labels, stats)  # all computed before anything is written
    summary = {"source": str(source), "tokens": labels, "layers": att.shape[0], "heads": att.shape[1],
               **{k: np.round(v, 6).tolist() for k, v in stats.items()}, "figures": sorted(figs)}
    inputs = [] if str(source) == "minilm" else [Path(source)]
    with rundir.claim(Path(out_dir), "attention", force=force, inputs=inputs) as folder:
        for name, fig in figs.items():
            plotting.save(fig, folder / name)
        records.write_json(folder / "summary.json", summary)
    return summary
