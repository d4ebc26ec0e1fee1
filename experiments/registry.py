"""The research experiments, each runnable by name: `sandbox run NAME [KEY=VALUE ...] --out DIR`.

An experiment is a module `experiments/<name>.py` (installed as `sandbox.experiments.<name>`) with a
`Config` dataclass (its defaults in `configs/experiments/<name>.yaml`; `--quick` also applies
`<name>.quick.yaml`, a variant that runs in well under a minute) and `run(cfg, out_dir, progress) ->
summary`. A reproduction writes its `summary.json` through `experiments/protocol.py`: `expected`
(prediction, source, pass rule), per-seed measurements and verdicts, their aggregate, and the verdict.
"""

import dataclasses
import difflib
import importlib
from pathlib import Path

from omegaconf import OmegaConf

from sandbox import config as config_lib
from sandbox.errors import SandboxError
from sandbox.train import config as run_config

NAMES = ("quickstart", "optimizer_comparison", "edge_of_stability", "hessian_outliers", "entropy_rate",
         "block_heterogeneity", "rank_collapse", "precision", "laplace_overconfidence", "smollm2_tour")


def get(name: str):
    """The experiment module called `name`."""
    if name not in NAMES:
        close = difflib.get_close_matches(name, NAMES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SandboxError(f"unknown experiment {name!r}{hint} Valid: {', '.join(NAMES)}")
    return importlib.import_module(f"sandbox.experiments.{name}")


def load_config(name: str, overrides: list[str] = (), quick: bool = False):
    """The experiment's typed config: defaults, its YAML file(s), then the overrides."""
    module = get(name)
    folder = config_lib.CONFIG_DIR / "experiments"
    raw = OmegaConf.load(folder / f"{name}.yaml")
    if quick:
        raw = OmegaConf.merge(raw, OmegaConf.load(folder / f"{name}.quick.yaml"))
    cfg = config_lib.resolve(raw, list(overrides), schema=module.Config)
    if hasattr(cfg, "base") and hasattr(cfg, "overrides"):  # a training config inside: check it now too
        run_config.load(cfg.base, cfg.overrides)
    return cfg


def run(name: str, out_dir: Path, overrides: list[str] = (), quick: bool = False, progress: bool = True) -> dict:
    """Run experiment `name` into `out_dir` (created beforehand), saving its resolved config there."""
    from sandbox.train import records

    cfg = load_config(name, overrides, quick)
    records.write_atomic(Path(out_dir) / "config.yaml", config_lib.to_yaml(cfg))
    return get(name).run(cfg, Path(out_dir), progress)


def describe() -> list[tuple[str, str, str]]:
    """(name, config fields, first line of the docstring) per experiment."""
    rows = []
    for name in NAMES:
        module = get(name)
        fields = ", ".join(f.name for f in dataclasses.fields(module.Config))
        rows.append((name, fields, (module.__doc__ or "").strip().splitlines()[0]))
    return rows
