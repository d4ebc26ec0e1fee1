"""One writer of experiment results: seeds, per-seed measurements and verdicts, aggregate, expected, verdict.

A reproduction states its prediction before it measures: `Expected` holds the prediction, its
source, the per-seed pass rule and the reason for that rule, and how the seeds combine (by default
the experiment passes only if every seed passes). It then runs `seeds` independent seeds (the
config's `seed` is the first) and hands one `SeedResult` per seed to `write`, which adds the
aggregate of every measured scalar over the seeds (mean, std, min, max) and the overall verdict,
and writes `summary.json`:

    {"experiment", "expected": {prediction, source, rule, reason, combine},
     "seeds": [s0, s1, ...], "per_seed": [{"seed", "measured", "verdict", "details"}, ...],
     "aggregate": {quantity: {"mean", "std", "min", "max", "n"}}, "verdict", "figures", "setup"}

Verdicts: a seed "pass"es or "fail"s its rule, or is "not applicable" (`passed=None`: the rule's stated
precondition does not hold there, e.g. a source outside the claim's scope; its reason in `details`). The
experiment's `verdict` is "pass" when enough applicable seeds pass; otherwise "not reproduced" when the
experiment says why from what it measured (`not_reproduced`, written beside it), else "fail". A run that
diverges is a failed seed, not an exception.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sandbox.errors import SandboxError
from sandbox.train import records

PASS, FAIL, NOT_REPRODUCED, NOT_APPLICABLE = "pass", "fail", "not reproduced", "not applicable"
VERDICTS = (PASS, FAIL, NOT_REPRODUCED)


@dataclass(frozen=True)
class Expected:
    """What the experiment predicts, stated before it measures.

    `rule` is the per-seed pass rule and `reason` why it is that rule (from the mathematics, not
    tuned to a seed). `min_pass_fraction` is how the seeds combine: 1.0 (the default) means every
    seed must pass; a smaller value needs `combine_reason`.
    """

    prediction: str
    source: str
    rule: str
    reason: str
    min_pass_fraction: float = 1.0
    combine_reason: str = ""

    def __post_init__(self):
        if not 0 < self.min_pass_fraction <= 1:
            raise SandboxError(f"min_pass_fraction must lie in (0, 1], got {self.min_pass_fraction}")
        if self.min_pass_fraction < 1 and not self.combine_reason:
            raise SandboxError("a rule other than 'every seed passes' needs its reason (combine_reason)")

    def as_dict(self) -> dict:
        combine = ("pass only if every seed passes" if self.min_pass_fraction == 1 else
                   f"pass if at least {self.min_pass_fraction:.0%} of the seeds pass: {self.combine_reason}")
        return {"prediction": self.prediction, "source": self.source, "rule": self.rule,
                "reason": self.reason, "combine": combine}


@dataclass
class SeedResult:
    """One seed's outcome: `measured` maps quantity names to scalars (aggregated over seeds; None
    where a seed has no value), `details` holds anything else (curves, lists), kept per seed.
    `passed` is None where the rule does not apply to this seed (its reason in details)."""

    seed: int
    measured: dict
    passed: bool | None
    details: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return NOT_APPLICABLE if self.passed is None else PASS if self.passed else FAIL

    def as_dict(self) -> dict:
        return {"seed": self.seed, "measured": self.measured, "verdict": self.verdict, "details": self.details}


def check_seeds(seed: int, seeds: int) -> None:
    """Raise SandboxError unless `seeds` (the count) is a positive integer and `seed` an integer >= 0."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SandboxError(f"seeds (the number of independent seeds) must be a positive integer, got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SandboxError(f"seed (the first seed) must be a non-negative integer, got {seed!r}")


def seed_list(cfg) -> list[int]:
    """The seeds an experiment runs: cfg.seed, cfg.seed + 1, ..., cfg.seed + cfg.seeds - 1."""
    check_seeds(cfg.seed, cfg.seeds)
    return list(range(cfg.seed, cfg.seed + cfg.seeds))


def aggregate(results: list[SeedResult]) -> dict:
    """{quantity: {mean, std, min, max, n}} over the seeds of every numeric measured value
    (std is the population std, 0 for one seed; n counts the seeds that have the value)."""
    out = {}
    names = list(dict.fromkeys(name for r in results for name in r.measured))
    for name in names:
        values = [r.measured.get(name) for r in results]
        values = [float(v) for v in values if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            continue
        arr = np.asarray(values)
        out[name] = {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()),
                     "max": float(arr.max()), "n": len(values)}
    return out


def verdict(results: list[SeedResult], expected: Expected, not_reproduced: str = "") -> str:
    """PASS if the fraction of applicable seeds that pass reaches expected.min_pass_fraction (default: all);
    otherwise NOT_REPRODUCED where `not_reproduced` says why, else FAIL. No applicable seed: not reproduced."""
    if not results:
        raise SandboxError("no seed was run")
    applicable = [r for r in results if r.passed is not None]
    passed = sum(bool(r.passed) for r in applicable)
    if applicable and passed >= expected.min_pass_fraction * len(applicable) - 1e-9:
        return PASS
    return NOT_REPRODUCED if not_reproduced or not applicable else FAIL


def summary(name: str, cfg, expected: Expected, results: list[SeedResult], figures: list[str] = (),
            extra: dict | None = None, not_reproduced: str = "") -> dict:
    """The summary dict (see the module docstring); `extra` adds experiment-wide fields; `not_reproduced`
    is why the claim does not hold here, from the measurements (used only if the rule fails)."""
    final = verdict(results, expected, not_reproduced)
    out = {
        "experiment": name,
        "expected": expected.as_dict(),
        "seeds": [r.seed for r in results],
        "per_seed": [r.as_dict() for r in results],
        "aggregate": aggregate(results),
        "verdict": final,
        **({"not_reproduced": not_reproduced or "no seed is within the rule's scope"}
           if final == NOT_REPRODUCED else {}),
        "figures": [str(f) for f in figures],
        **(extra or {}),
        "setup": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg),
    }
    return out


def write(out_dir: Path, name: str, cfg, expected: Expected, results: list[SeedResult],
          figures: list[str] = (), extra: dict | None = None, not_reproduced: str = "") -> dict:
    """Build the summary and write it to `out_dir/summary.json` (atomically); returns it."""
    out = summary(name, cfg, expected, results, figures, extra, not_reproduced)
    records.write_json(Path(out_dir) / "summary.json", out)
    return out


def spread(agg: dict, digits: int = 3) -> str:
    """'mean ± std (min..max)' of one aggregate entry, for progress lines and tables."""
    f = f"{{:.{digits}g}}"
    return (f"{f.format(agg['mean'])} ± {f.format(agg['std'])} "
            f"({f.format(agg['min'])}..{f.format(agg['max'])})")


LAYOUT = ("experiment", "expected", "seeds", "per_seed", "aggregate", "verdict", "figures")


def read(folder: Path) -> dict:
    """The summary.json of an experiment folder, checked to follow this layout (SandboxError if not)."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise SandboxError(f"{folder} has no summary.json: not an experiment's result folder (sandbox run NAME)")
    out = records.read_json(path)
    missing = [key for key in LAYOUT if key not in out]
    if missing or out["verdict"] not in VERDICTS:
        raise SandboxError(f"{path} does not follow the experiments' result layout (missing {missing or 'a verdict'})")
    return out


def row(folder: Path, summary: dict) -> tuple[str, ...]:
    """(folder, experiment, seeds, per-seed verdicts counted, verdict, why not reproduced) for a table."""
    counts = {}
    for s in summary["per_seed"]:
        counts[s["verdict"]] = counts.get(s["verdict"], 0) + 1
    seeds = summary["seeds"]
    span = ", ".join(map(str, seeds)) if len(seeds) <= 4 else f"{seeds[0]}..{seeds[-1]} ({len(seeds)})"
    return (str(folder), summary["experiment"], span, ", ".join(f"{n} {v}" for v, n in counts.items()),
            summary["verdict"], summary.get("not_reproduced", ""))
