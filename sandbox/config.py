"""Configs as data: a typed schema (a dataclass), YAML files, presets by name, dotted overrides.

`load(path, overrides, schema, groups)` merges, in order: the schema's defaults, the YAML file,
then each `KEY=VALUE` override. A group of `groups` given as a bare name (`model: tiny` in YAML,
or `optimizer=adamw` on the command line) loads the preset `configs/<group>/<name>.yaml`.
Unknown keys, wrong types and invalid values raise `SandboxError` naming the key and the
valid choices. The schema is an argument: the run's own lives with the engine
(`sandbox.train.config`), an experiment's with the experiment.
"""

import dataclasses
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from sandbox import configs, validate
from sandbox.errors import SandboxError

CONFIG_DIR = Path(configs.__file__).resolve().parent  # the top-level configs/ folder, shipped as package data


def presets(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _preset(group: str, name: str, schema) -> DictConfig:
    path = CONFIG_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise SandboxError(f"unknown {group} preset {name!r}; valid: {', '.join(presets(group))}")
    return OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path))


def find(path: str | Path) -> Path:
    """`path` itself if it exists, else the same relative path in the sandbox's configs folder.

    So `configs/tiny.yaml` (or `tiny.yaml`) names the shipped preset from any working folder.
    """
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    inside = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) else path
    return CONFIG_DIR / inside if (CONFIG_DIR / inside).is_file() else path


def _read_yaml(path: Path) -> DictConfig:
    path = find(path)
    if path.exists() and not path.is_file():
        raise SandboxError(f"config file {path} is a folder, device or pipe, not a file")
    if not path.is_file():
        raise SandboxError(f"config file {path} not found")
    try:
        raw = OmegaConf.load(path)
    except Exception as e:  # YAML syntax errors come in several types, their text over several lines
        raise SandboxError(f"config file {path} is not valid YAML: {' '.join(str(e).split())[:300]}") from None
    if not isinstance(raw, DictConfig):
        raise SandboxError(f"config file {path} must hold a mapping of sections (model, data, ...)")
    return raw


def _explain(e: OmegaConfBaseException, schema) -> str:
    """Turn an OmegaConf error into one line naming the key and what is valid there."""
    key = e.full_key or e.key or "?"
    if isinstance(e, ConfigKeyError):
        parent = OmegaConf.select(OmegaConf.structured(schema), key.rpartition(".")[0]) if "." in key else None
        section = parent if isinstance(parent, DictConfig) else OmegaConf.structured(schema)
        return f"unknown config key {key!r}; valid keys here: {', '.join(section.keys())}"
    if isinstance(e, ValidationError):
        return f"config key {key!r} has a value of the wrong type: {e.msg.splitlines()[0]}"
    return f"config error at {key!r}: {e.msg.splitlines()[0]}"


def resolve(raw: DictConfig, overrides: list[str], schema, groups: dict | None = None):
    """Merge `schema`'s defaults, `raw` and the overrides into a validated `schema` instance.

    `groups` maps a section name to its schema where a bare name loads a preset
    (`{"model": ModelConfig}`: `model=small` reads configs/model/small.yaml).
    """
    groups = groups or {}
    try:
        cfg = OmegaConf.structured(schema)
        for group in groups:
            if isinstance(raw.get(group), str):
                cfg[group] = _preset(group, raw[group], groups[group])
                raw = OmegaConf.masked_copy(raw, [k for k in raw if k != group])
        cfg = OmegaConf.merge(cfg, raw)
        for override in overrides:
            key, eq, value = override.partition("=")
            if not eq or not key:
                raise SandboxError(f"override {override!r} must look like KEY=VALUE, e.g. train.steps=100")
            if key in groups and "." not in value and not value.startswith("{"):
                cfg[key] = _preset(key, value, groups[key])
            else:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        return _check_floats(OmegaConf.to_object(cfg))
    except OmegaConfBaseException as e:
        raise SandboxError(_explain(e, schema)) from None
    except TypeError as e:  # a dataclass built with a value it cannot take
        raise SandboxError(f"invalid config: {e}") from None


def _bad_floats(obj, prefix: str = ""):
    """(key, value) of every float in a config tree that is NaN or does not fit in float32."""
    if dataclasses.is_dataclass(obj):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _bad_floats(value, f"{prefix}{key}.")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _bad_floats(value, f"{prefix}{i}.")
    elif isinstance(obj, float) and (math.isnan(obj) or (math.isfinite(obj) and abs(obj) > validate.FLOAT32_MAX)):
        yield prefix[:-1], obj


def _check_floats(cfg):
    """Refuse NaN and values that overflow float32 (1e39 is finite in Python, inf on the device)."""
    bad = next(_bad_floats(cfg), None)
    if bad is not None:
        raise SandboxError(f"config key {bad[0]!r} = {bad[1]!r} is not a usable number: "
                           f"the computation runs in float32, whose largest value is {validate.FLOAT32_MAX:.4g}")
    return cfg


def load(path: str | Path, overrides: list[str], schema, groups: dict | None = None):
    """Read a YAML config file (see `find`) and apply `KEY=VALUE` overrides."""
    return resolve(_read_yaml(Path(path)), overrides, schema, groups)


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
