"""Several processes, one program: JAX's multi-controller runtime (`jax.distributed`).

Every process runs the same command; `initialize` joins them through a coordinator (process 0's
HOST:PORT), after which `jax.devices()` lists the devices of all processes and one jitted program
spans them, so the run equals a single process with as many devices. Without explicit arguments JAX
reads its own environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) or Slurm's
and TPU pods' (cluster auto-detection). On CPU the collectives go through gloo. Only process 0
(`is_primary`) writes metrics, figures and the summary; checkpoints are saved by all together (orbax).
A process that dies stops the others after `heartbeat_timeout` seconds with JAX's own error instead
of a hang.
"""

import os

import jax

from sandbox.errors import SandboxError


def initialize(num_processes: int | None = None, process_id: int | None = None, coordinator: str | None = None,
               timeout: int = 120, heartbeat_timeout: int = 60) -> None:
    """Join the other processes of this run, from the arguments if given, else from the environment.

    Does nothing when neither the arguments nor the environment ask for several processes.
    """
    given = (num_processes, process_id, coordinator)
    several = os.environ.get("JAX_COORDINATOR_ADDRESS") or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    if all(x is None for x in given) and not several:
        return
    if any(x is None for x in given) and any(x is not None for x in given):
        raise SandboxError("--num-processes, --process-id and --coordinator go together: give all three "
                           "(or none, and let JAX read its environment or Slurm's)")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise SandboxError(f"--process-id {process_id} must be in 0..{num_processes - 1}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices only; GPUs/TPUs use their own
    try:
        # a process that stops on an error waits at most shutdown_timeout for the others, then exits
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=heartbeat_timeout, shutdown_timeout_seconds=30)
        jax.devices()  # start the backend now, in every process: it exchanges the device lists with the others
    except Exception as e:  # the coordinator is unreachable, or the others never came
        raise SandboxError(f"could not join the {num_processes or ''} processes through "
                           f"{coordinator or 'the environment'} within {timeout} s: "
                           f"{(str(e).splitlines() or [repr(e)])[0]}") from None


def is_primary() -> bool:
    """True in process 0 (and in a single-process run): the one that writes the run's files."""
    return jax.process_index() == 0


def free_port() -> int:
    """A TCP port nothing listens on now (for a local coordinator)."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch_local(num_processes: int, argv: list[str], devices_per_process: int = 1, port: int | None = None,
                 poll_seconds: float = 0.5) -> None:
    """Run `sandbox ARGV --num-processes N --process-id I --coordinator localhost:PORT` for I = 0..N-1 on this
    machine, each with `devices_per_process` simulated CPU devices; wait for all. If one fails, stop the
    others and raise SandboxError naming it (a multi-process run cannot go on without any of its processes)."""
    import signal
    import subprocess
    import sys
    import time

    if num_processes < 1 or devices_per_process < 1:
        raise SandboxError("--local and --devices-per-process must be at least 1")
    if not argv:
        raise SandboxError("give the command to run after `--`, e.g. "
                           "`sandbox launch --local 2 -- train configs/tiny.yaml`")
    coordinator = f"localhost:{port or free_port()}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a terminated launcher still stops its processes
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
    procs = [subprocess.Popen([sys.executable, "-m", "sandbox", *argv, "--num-processes", str(num_processes),
                               "--process-id", str(i), "--coordinator", coordinator], env=env)
             for i in range(num_processes)]
    try:
        while any(p.poll() is None for p in procs):
            failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
            if failed:
                raise SandboxError(f"process {failed[0][0]} of {num_processes} exited with code {failed[0][1]}; "
                                   "the others were stopped (a multi-process run needs all of them)")
            time.sleep(poll_seconds)
        failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise SandboxError(f"process {failed[0][0]} of {num_processes} exited with code {failed[0][1]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def barrier(name: str, timeout: int = 600) -> None:
    """Wait until every process got here (a no-op for one process), e.g. until process 0 claimed the run folder.

    JAX's coordination-service barrier, not a device collective: gloo gives a collective's first use only
    30 s for all processes to arrive, while process 0 may be busy longer (checks, locking) on a loaded machine.
    """
    if jax.process_count() > 1:
        from jax._src import distributed as jax_distributed  # the client jax.distributed.initialize made

        jax_distributed.global_state.client.wait_at_barrier(f"sandbox:{name}", timeout * 1000)
