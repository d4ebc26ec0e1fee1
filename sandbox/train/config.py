"""The schema of the `train:` section: how long, how big, how often to evaluate and save."""

from dataclasses import dataclass

from sandbox import validate


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
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    sharpness_every: int = 0  # 0: off; else log the top Hessian eigenvalue every N steps
    sharpness_preconditioned: bool = False  # also log lambda_max(P^-1/2 H P^-1/2) for Adam's P
    num_seeds: int = 1  # >1: train that many independent models at once with vmap

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "log_every",
                     "checkpoint_every", "keep_checkpoints", "num_seeds"):
            validate.positive_int("train", name, getattr(self, name))
        for name in ("seed", "num_devices", "sharpness_every"):
            validate.non_negative_int("train", name, getattr(self, name))
        validate.in_range("train", "label_smoothing", self.label_smoothing, 0.0, 1.0, closed=(True, False))
        validate.in_range("train", "z_loss", self.z_loss, 0.0, float("inf"))
