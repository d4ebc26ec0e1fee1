"""`sandbox launch --local N [--devices-per-process K] -- train CONFIG ...`: N processes of one run, here."""

import argparse


def add_parser(subparsers):
    p = subparsers.add_parser("launch", help="run a command as N cooperating local processes (jax.distributed)")
    p.add_argument("--local", type=int, required=True, metavar="N", help="how many processes to start on this machine")
    p.add_argument("--devices-per-process", type=int, default=1, metavar="K",
                   help="simulated CPU devices per process (XLA_FLAGS); the run sees N x K devices")
    p.add_argument("--port", type=int, help="the coordinator's port on localhost (default: a free one)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="after `--`: the sandbox command, e.g. train configs/tiny.yaml")
    p.set_defaults(func=run)


def run(args) -> int:
    from sandbox.train import distributed

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    distributed.launch_local(args.local, argv, args.devices_per_process, args.port)
    print(f"all {args.local} processes finished")
    return 0
