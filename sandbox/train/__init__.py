"""The engine: a run's typed config, its train state and compiled step, the loop, checkpoints, sharding.

    from sandbox import train
    cfg = train.config.load("configs/tiny.yaml", ["train.steps=100"])   # YAML + dotted overrides, checked
    summary = train.session.start(cfg, Path("runs/x"))                   # a new run folder
    summary = train.session.resume(Path("runs/x"), ["train.steps=200"])  # continue it exactly
    print(train.memory.step_bytes(cfg, optim.build(cfg.optimizer, cfg.train.steps)))

Submodules load on first use, so `import sandbox.train.config` stays light.
"""

from sandbox import lazy

__all__ = ["checkpoint", "config", "distributed", "manifest", "memory", "mesh", "objective", "precision",
           "progress", "records", "session", "sharpness", "step"]
__getattr__ = lazy.submodules(__name__, __all__)
