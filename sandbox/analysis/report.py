"""Reports: one self-contained HTML page for a run, or for several runs side by side.

Every page ends with its provenance (`provenance`): the sandbox's version, the git commit of its
source when it is a checkout (and whether that had uncommitted changes), the machine, and each
run's resolved config.yaml, so a page alone says what produced its numbers. `compare` overlays the
runs' loss curves and tabulates their summaries; runs that differ only in `train.seed` form a group
whose final val loss is given as mean ± std over its runs (a run of several vmapped seeds gives its
own std over them).
"""

import base64
import datetime
import html
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from sandbox import plotting
from sandbox.errors import SandboxError
from sandbox.train import records
from sandbox.train.figures import plot_loss

STYLE = ("body{font-family:sans-serif;max-width:64em;margin:auto}td,th{padding:2px 12px;text-align:left}"
         "img{max-width:100%}figcaption{font-size:90%;margin-bottom:2em}pre{background:#f4f4f4;padding:8px;"
         "font-size:85%;overflow-x:auto}")


def provenance() -> dict:
    """{"sandbox_version", "git_commit" (or None), "git_dirty", "machine", "python", "jax", "devices", "when"}."""
    import jax

    try:
        sandbox_version = version("llm-math-sandbox")
    except PackageNotFoundError:
        sandbox_version = "(not installed)"
    source = Path(__file__).resolve().parents[2]
    commit, dirty = None, None
    try:
        git = lambda *a: subprocess.run(["git", "-C", str(source), *a], capture_output=True, text=True,  # noqa: E731
                                        timeout=10)
        got = git("rev-parse", "HEAD")
        if got.returncode == 0:
            commit = got.stdout.strip()
            dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    devices = jax.devices()
    return {"sandbox_version": sandbox_version, "git_commit": commit, "git_dirty": dirty,
            "machine": f"{platform.node()}: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(), "jax": jax.__version__,
            "devices": f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})",
            "when": datetime.datetime.now().isoformat(timespec="seconds")}


def _table(header: tuple, rows: list) -> str:
    cell = lambda tag, x: f"<{tag}>{html.escape(str(x))}</{tag}>"  # noqa: E731
    head = "".join(cell("th", h) for h in header)
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{''.join(cell('td', x) for x in r)}</tr>" for r in rows) \
        + "</table>"


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def provenance_html(configs: dict[str, str]) -> str:
    """The provenance section: the table of `provenance()` and each resolved config ({label: YAML text})."""
    prov = provenance()
    commit = prov["git_commit"] or "none (not a git checkout)"
    if prov["git_dirty"]:
        commit += " (with uncommitted changes)"
    rows = [("sandbox version", prov["sandbox_version"]), ("git commit", commit), ("machine", prov["machine"]),
            ("python / jax", f"{prov['python']} / {prov['jax']}"), ("devices", prov["devices"]),
            ("page written", prov["when"])]
    body = "".join(f"<h3>resolved config: {html.escape(label)}</h3><pre>{html.escape(text)}</pre>"
                   for label, text in configs.items())
    return f"<h2>provenance</h2>{_table(('what', 'value'), rows)}{body}"


def page(title: str, body: str) -> str:
    """A whole HTML page around `body`."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def results_page(title: str, rows: list[tuple[str, str, str]], figures: dict, folder: Path, note: str,
                 configs: dict[str, str]) -> str:
    """An experiment's page: rows (quantity, value, measured on), a note, each figure file of `folder` with its
    caption ({file: caption}), then the provenance with the resolved configs ({label: YAML text})."""
    body = (_table(("quantity", "value", "measured on"), rows) + f"<p>{html.escape(note)}</p>"
            + "".join(_figure(Path(folder) / name, caption) for name, caption in figures.items()))
    return page(title, body + provenance_html(configs))


def check_run(run_dir: Path) -> None:
    """Raise SandboxError unless `run_dir` is a train run folder (it has config.yaml and metrics.jsonl)."""
    run_dir = Path(run_dir)
    if not ((run_dir / "config.yaml").is_file() and (run_dir / "metrics.jsonl").is_file()):
        raise SandboxError(f"{run_dir} is not a train run folder (no config.yaml and metrics.jsonl); give a "
                           "folder made by `sandbox train`")


def _run(run_dir: Path) -> tuple[dict, list, str]:
    """(summary, metrics rows, config.yaml text) of a train run folder; raises SandboxError if it is not one."""
    run_dir = Path(run_dir)
    check_run(run_dir)
    summary = records.read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    return summary, records.read_metrics(run_dir / "metrics.jsonl"), (run_dir / "config.yaml").read_text()


def _fmt(x, spec: str = ".4f") -> str:
    return "—" if x is None else format(x, spec)


def run_report(run_dir: Path, out_dir: Path) -> Path:
    """`out_dir/report.html` for the train run in `run_dir` (finished or not): summary, loss curve, provenance."""
    summary, rows, config_text = _run(run_dir)
    last = rows[-1] if rows else {}
    val = summary.get("final_val_loss", next((r["val_loss"] for r in reversed(rows) if "val_loss" in r), None))
    spread = summary.get("final_val_loss_std")
    table = [("steps trained", last.get("step", "—"), f"of {summary.get('steps', '—')} planned"
              if summary else "no summary.json: the run has not finished"),
             ("final val loss (nats/token)", _fmt(val) + (f" ± {spread:.4f} (std over seeds)" if spread else ""),
              f"eval set {summary.get('eval_set', '—')}"),
             ("final train loss (nats/token)", _fmt(last.get("train_loss")), "the last logged steps' batches"),
             ("parameters", f"{summary['num_params']:,}" if "num_params" in summary else "—", "the model"),
             ("throughput (tokens/s)", _fmt(summary.get("tokens_per_second"), ".0f"), "median over logged rows"),
             ("wall time (s)", _fmt(summary.get("wall_seconds"), ".1f"), "compiling included")]
    out_dir = Path(out_dir)
    name = plot_loss(rows, out_dir / "loss.png", summary.get("entropy_rate"), summary.get("eval_set"))
    body = (_table(("quantity", "value", "measured on"), table)
            + _figure(out_dir / name, "Mean next-token cross-entropy (nats/token) against steps: on each step's "
                      "train batch and on the run's fixed eval set.")
            + provenance_html({str(run_dir): config_text}))
    records.write_atomic(out_dir / "report.html", page(f"run {Path(run_dir).name}", body))
    return out_dir / "report.html"


def _flat(config_text: str) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.create(config_text))
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            walk(v, f"{prefix}{k}.") if isinstance(v, dict) else out.__setitem__(f"{prefix}{k}", v)

    walk(cfg, "")
    return out


def differences(configs: list[str]) -> dict[str, list]:
    """{dotted key: [value in each config]} of the keys whose values are not all equal."""
    flats = [_flat(c) for c in configs]
    keys = sorted(set().union(*flats))
    return {k: [f.get(k) for f in flats] for k in keys if len({repr(f.get(k)) for f in flats}) > 1}


def groups(configs: list[str]) -> list[list[int]]:
    """Indices of the runs grouped by their config with `train.seed` left out (same run, other seeds)."""
    keyed: dict[str, list[int]] = {}
    for i, text in enumerate(configs):
        flat = _flat(text)
        flat.pop("train.seed", None)
        keyed.setdefault(repr(sorted(flat.items(), key=lambda kv: kv[0])), []).append(i)
    return list(keyed.values())


def compare(run_dirs: list[Path], out_dir: Path) -> dict:
    """`out_dir/compare.html`, `losses.png` and `compare.json`: the runs' losses overlaid, their summaries
    side by side, the config keys in which they differ, and per group of seeds the final val loss's spread."""
    if len(run_dirs) < 2:
        raise SandboxError("compare needs at least two run folders")
    for r in run_dirs:
        check_run(r)
    names = [Path(r).name for r in run_dirs]
    if len(set(names)) < len(names):
        names = [str(r) for r in run_dirs]
    loaded = [_run(r) for r in run_dirs]
    configs = [c for _, _, c in loaded]
    out_dir = Path(out_dir)
    fig, ax = plotting.figure(7, 4.5)
    for i, (name, (_, rows, _)) in enumerate(zip(names, loaded)):
        color = f"C{i % 10}"
        for key, style, what in (("train_loss", ":", "train"), ("val_loss", "-", "val")):
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), style, color=color, marker="o" if key == "val_loss" else None, ms=3,
                        label=f"{name} ({what})")
    ax.set(xlabel="training step", ylabel="cross-entropy (nats/token)",
           title="loss of each run: val (solid, its eval set) and train (dotted)")
    ax.legend(fontsize=7)
    plotting.save(fig, out_dir / "losses.png")
    table = []
    for name, (summary, rows, _) in zip(names, loaded):
        spread = summary.get("final_val_loss_std")
        val = summary.get("final_val_loss", next((r["val_loss"] for r in reversed(rows) if "val_loss" in r), None))
        table.append({"run": name, "steps": rows[-1]["step"] if rows else None,
                      "final_val_loss": val, "final_val_loss_std_over_seeds": spread,
                      "final_train_loss": next((r["train_loss"] for r in reversed(rows) if "train_loss" in r), None),
                      "tokens_per_second": summary.get("tokens_per_second"), "num_params": summary.get("num_params"),
                      "eval_set": summary.get("eval_set")})
    seeds = []
    for members in groups(configs):
        vals = [table[i]["final_val_loss"] for i in members if table[i]["final_val_loss"] is not None]
        if len(members) > 1 and len(vals) == len(members):
            seeds.append({"runs": [names[i] for i in members], "n": len(vals), "mean": float(np.mean(vals)),
                          "std": float(np.std(vals, ddof=1)), "min": min(vals), "max": max(vals)})
    result = {"runs": table, "differences": differences(configs), "seed_groups": seeds, "provenance": provenance()}
    records.write_json(out_dir / "compare.json", result)
    body = _table(("run", "steps", "final val loss (nats/token)", "final train loss", "tokens/s", "parameters",
                   "eval set"),
                  [(r["run"], r["steps"], _fmt(r["final_val_loss"]) + (
                      f" ± {r['final_val_loss_std_over_seeds']:.4f} (std over its seeds)"
                      if r["final_val_loss_std_over_seeds"] else ""), _fmt(r["final_train_loss"]),
                    _fmt(r["tokens_per_second"], ".0f"), r["num_params"], r["eval_set"]) for r in table])
    if seeds:
        body += "<h2>runs that differ only in train.seed</h2>" + _table(
            ("runs", "n", "final val loss: mean ± std (sample, n - 1)", "min .. max"),
            [(", ".join(g["runs"]), g["n"], f"{g['mean']:.4f} ± {g['std']:.4f}", f"{g['min']:.4f} .. {g['max']:.4f}")
             for g in seeds])
    diffs = result["differences"]
    body += "<h2>how their configs differ</h2>" + (
        _table(("key", *names), [(k, *map(str, v)) for k, v in diffs.items()]) if diffs
        else "<p>the configs are identical</p>")
    body += _figure(out_dir / "losses.png", "Each run's loss against steps; colour: run; solid: val loss on the "
                    "run's own eval set (named in the table), dotted: train loss on the steps' batches.")
    body += provenance_html(dict(zip(names, configs)))
    records.write_atomic(out_dir / "compare.html", page(f"{len(names)} runs compared", body))
    return result
