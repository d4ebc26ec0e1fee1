"""`sandbox launch --local N [--devices-per-process K] -- train CONFIG ...`: N processes of one run, here."""

import argparse

from sandbox.cli import argtypes


def add_parser(subparsers):
    p = subparsers.add_parser("launch", help="run a command as N cooperating local processes (jax.distributed)")
    p.add_argument("--local", type=argtypes.count(1, 4096), required=True, metavar="N",
                   help="how many processes to start on this machine")
    p.add_argument("--devices-per-process", type=argtypes.count(1, 512), default=1, metavar="K",
                   help="simulated CPU devices per process (XLA_FLAGS); the run sees N x K devices")
    p.add_argument("--port", type=argtypes.PORT, help="the coordinator's port on localhost (default: a free one)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="after `--`: the sandbox command, e.g. train configs/tiny.yaml")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox.train import distributed

    _check_machine(args.local, args.devices_per_process)
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    distributed.launch_local(args.local, argv, args.devices_per_process, args.port)
    print(f"all {args.local} processes finished")
    return 0


PROCESS_BYTES = 2**30  # what one jax process holds before its model: the runtime, XLA, the data (about)


def _check_machine(num_processes: int, devices_per_process: int) -> None:
    """Refuse more processes than this machine's cores, or than its free memory holds at PROCESS_BYTES each."""
    import os

    from sandbox.errors import SandboxError

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if num_processes > cores:
        raise SandboxError(f"--local {num_processes} exceeds this machine's {cores} cores; use at most {cores} "
                           "(each process may simulate several devices: --devices-per-process)")
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    need = num_processes * PROCESS_BYTES
    if need > free:
        raise SandboxError(f"--local {num_processes} needs about {need / 2**30:.0f} GiB ({PROCESS_BYTES / 2**30:.0f} "
                           f"GiB per process) but only {free / 2**30:.1f} GiB of RAM is free; use fewer processes")
