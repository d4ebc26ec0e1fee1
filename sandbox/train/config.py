"""The run's config schema: `train:` (how long, how big, how often to evaluate and save) and the
whole run (`model`, `data`, `optimizer`, `train`, `run`), read by the generic loader `sandbox.config`.
"""

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from sandbox import config as loader
from sandbox import validate
from sandbox.config import to_yaml  # noqa: F401  (a run's config.yaml)
from sandbox.nn.config import ModelConfig
from sandbox.optim.config import OptimizerConfig
from sandbox.text.data import DataConfig

PRECISIONS = ("fp32", "bf16", "fp16", "mixed_bf16", "mixed_fp16")
SHARDINGS = ("replicated", "fsdp", "fsdp_tp")  # as sandbox.train.mesh.SHARDINGS
UPDATE_ROUNDINGS = ("nearest", "stochastic", "kahan")
LOSS_SCALINGS = ("dynamic", "none")


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 32
    eval_every: int = 100
    eval_batches: int = 8
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    seed: int = 0
    num_devices: int = 0  # 0: every visible device; the batch is split over the mesh's `data` axis
    sharding: str = "replicated"  # the state on the mesh: replicated | fsdp | fsdp_tp (see sandbox.train.mesh)
    model_parallel: int = 2  # fsdp_tp only: devices on the mesh's `model` axis (heads, MLP units split)
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    sharpness_every: int = 0  # 0: off; else log the top Hessian eigenvalue every N steps
    sharpness_preconditioned: bool = False  # also log lambda_max(P^-1/2 H P^-1/2) for Adam's P
    num_seeds: int = 1  # >1: train that many independent models at once with vmap
    precision: str = "fp32"  # weights/compute dtypes: fp32 | bf16 | fp16 | mixed_bf16 | mixed_fp16
    update_rounding: str = "nearest"  # how bf16/fp16 weights round w + dw: nearest | stochastic | kahan
    loss_scaling: str = "dynamic"  # fp16 compute only: dynamic | none
    loss_scale_period: int = 200  # double the loss scale after this many finite steps
    static_loss_scale: float = 1.0  # low-precision compute: a constant loss scale (times the dynamic one, if any)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "log_every",
                     "checkpoint_every", "keep_checkpoints", "num_seeds", "loss_scale_period", "model_parallel"):
            validate.positive_int("train", name, getattr(self, name))
        validate.seed("train", "seed", self.seed)
        for name in ("num_devices", "sharpness_every"):
            validate.non_negative_int("train", name, getattr(self, name))
        validate.positive_number("train", "static_loss_scale", self.static_loss_scale)
        validate.in_range("train", "label_smoothing", self.label_smoothing, 0.0, 1.0, closed=(True, False))
        validate.in_range("train", "z_loss", self.z_loss, 0.0, float("inf"))
        for name, choices in (("sharding", SHARDINGS), ("precision", PRECISIONS), ("update_rounding", UPDATE_ROUNDINGS),
                              ("loss_scaling", LOSS_SCALINGS)):
            validate.one_of("train", name, getattr(self, name), choices)


@dataclass
class RunConfig:
    name: str = "run"  # the default run folder is runs/<name>-<timestamp>
    out_root: str = "runs"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


PRESET_GROUPS = {"model": ModelConfig, "optimizer": OptimizerConfig, "data": DataConfig}


def resolve(raw: DictConfig, overrides: list[str] = ()) -> Config:
    """The run config of `raw` (a YAML mapping) with `KEY=VALUE` overrides; presets by bare name."""
    return loader.resolve(raw, overrides, Config, PRESET_GROUPS)


def load(path: str | Path, overrides: list[str] = ()) -> Config:
    """The run config in YAML file `path` (`configs/tiny.yaml` works from any folder) with overrides."""
    return loader.load(path, overrides, Config, PRESET_GROUPS)
