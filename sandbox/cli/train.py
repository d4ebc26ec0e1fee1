"""`sandbox train CONFIG [KEY=VALUE ...] [--out DIR]` and `sandbox train --resume DIR`."""

import time
from pathlib import Path

from sandbox.cli import argtypes


def add_parser(subparsers):
    p = subparsers.add_parser("train", help="train a transformer LM from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides KEY=VALUE, e.g. train.steps=100 optimizer=lion")
    p.add_argument("--out", help="run folder (default: runs/<run.name>-<timestamp>)")
    p.add_argument("--force", action="store_true",
                   help="replace --out if it is a folder the sandbox made (never any other folder)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint "
                   "(only train.steps and the eval/log/checkpoint/sharpness cadence may be changed)")
    p.add_argument("--from-step", type=argtypes.STEP, metavar="STEP",
                   help="with --resume: continue from the checkpoint at STEP when the later ones are damaged "
                   "(they are deleted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and the memory estimate of one step, then exit (nothing written)")
    p.add_argument("--num-processes", type=argtypes.count(1, 4096), metavar="N",
                   help="a multi-process run: how many processes in all")
    p.add_argument("--process-id", type=argtypes.count(0, 4095), metavar="I",
                   help="a multi-process run: this process, 0..N-1")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="a multi-process run: process 0's address")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox.errors import SandboxError
    from sandbox.train import config as config_lib
    from sandbox.train import distributed, session

    distributed.initialize(args.num_processes, args.process_id, args.coordinator)
    if args.resume and args.dry_run:
        raise SandboxError("--dry-run goes with a new run (a config); a resume trains config.yaml of its folder")
    if args.resume:
        if args.config and "=" not in args.config:
            raise SandboxError(f"--resume {args.resume} continues the run with its own config.yaml; give no config "
                               f"file ({args.config}), only KEY=VALUE overrides of train.steps and the cadence")
        for flag, given in (("--out", args.out), ("--force", args.force)):
            if given:
                raise SandboxError(f"{flag} goes with a new run; --resume continues {args.resume} in place")
        overrides = ([args.config] if args.config else []) + args.overrides
        run_dir = Path(args.resume)
        summary = session.resume(run_dir, overrides, progress=not args.no_progress, from_step=args.from_step)
    else:
        if args.from_step is not None:
            raise SandboxError("--from-step goes with --resume DIR")
        if not args.config:
            raise SandboxError("give a config file (e.g. configs/tiny.yaml) or --resume DIR")
        cfg = config_lib.load(args.config, args.overrides)
        vocab_given = any(o.partition("=")[0].strip() == "model.vocab_size" for o in args.overrides)
        if args.dry_run:
            print(session.dry_run(cfg, vocab_given))
            return 0
        default = Path(cfg.run.out_root) / f"{cfg.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(args.out) if args.out else default
        summary = session.start(cfg, run_dir, force=args.force, progress=not args.no_progress, vocab_given=vocab_given)
    distributed.barrier("run written")  # the others wait for process 0's summary, then all shut down together
    if not distributed.is_primary():
        return 0
    spread = (f" ± {summary['final_val_loss_std']:.4f} (std over {summary['num_seeds']} seeds)"
              if summary.get("final_val_loss_std") is not None else "")
    print(f"final val loss {summary['final_val_loss']:.4f}{spread} nats/token on eval set {summary['eval_set']} after "
          f"{summary['steps']} steps ({summary['tokens_per_second']:.0f} tokens/s median, "
          f"{summary['wall_seconds']:.1f} s wall, compiling included)")
    print(f"run folder: {run_dir}")
    return 0
