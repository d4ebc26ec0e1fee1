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
import threading

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


def joined() -> bool:
    """Whether this process is one of several joined by `initialize` (jax already imported)."""
    return jax.process_count() > 1


def leave(code: int) -> None:
    """Exit at once with `code`, skipping JAX's shutdown barrier: after an error the other processes are not
    coming to it (they wait elsewhere, and the launcher stops them), so it would only wait out its timeout."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# the lines gloo prints as the processes connect: what any working run prints, so not shown
NOISE = ("[Gloo] Rank",)


def _said(stream, out, index: int, said: dict, quiet: threading.Event) -> None:
    """Pass a process's output (`stream`) through to `out`, keeping (not showing) its one-line outcome
    ('error: ...', 'interrupted: ...') for the launcher to report once, and dropping gloo's connection lines.
    After the first 'error:' of any process, nothing more is shown: the others are being stopped, and
    what they say about the one that left (lost connections, JAX's fatal-error report) is only noise."""
    for line in stream:
        if line.startswith(("error: ", "interrupted: ")):
            said.setdefault(index, line.rstrip("\n").partition(": ")[2])
            if line.startswith("error: "):
                quiet.set()
        elif not (line.startswith(NOISE) or quiet.is_set()):
            out.write(line)
            out.flush()


def launch_local(num_processes: int, argv: list[str], devices_per_process: int = 1, port: int | None = None,
                 poll_seconds: float = 0.2, grace_seconds: float = 5.0) -> None:
    """Run `sandbox ARGV --num-processes N --process-id I --coordinator localhost:PORT` for I = 0..N-1 on this
    machine, each with `devices_per_process` simulated CPU devices; wait for all.

    If one fails (a refusal, an error), the others are stopped (SIGTERM, then SIGKILL after `grace_seconds`:
    they may be waiting in a collective for the one that left) and SandboxError gives its one line, naming
    it. SIGINT or SIGTERM to the launcher is passed on once to every process (they are in their own session,
    so Ctrl-C reaches them only through it): they stop together at the same step and save it; raises
    `interrupts.Interrupted` with process 0's line. A second signal is passed on too (they abort).
    """
    import signal
    import subprocess
    import sys
    import time

    from sandbox.train import interrupts

    if num_processes < 1 or devices_per_process < 1:
        raise SandboxError("--local and --devices-per-process must be at least 1")
    if not argv:
        raise SandboxError("give the command to run after `--`, e.g. "
                           "`sandbox launch --local 2 -- train configs/tiny.yaml`")
    coordinator = f"localhost:{port or free_port()}"
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
    procs = [subprocess.Popen([sys.executable, "-m", "sandbox", *argv, "--num-processes", str(num_processes),
                               "--process-id", str(i), "--coordinator", coordinator], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
             for i in range(num_processes)]
    said, signals, quiet = {}, [], threading.Event()
    readers = [threading.Thread(target=_said, args=(stream, out, i, said, quiet), daemon=True)
               for i, p in enumerate(procs) for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr))]
    for reader in readers:
        reader.start()

    def forward(signum, frame):
        signals.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in interrupts.SIGNALS}
    try:
        while any(p.poll() is None for p in procs) and not signals:
            if any(p.returncode not in (None, 0) for p in procs):
                quiet.set()
                break
            time.sleep(poll_seconds)
        if signals:  # they save and stop together; wait for them (a second signal reaches them through forward)
            for p in procs:
                p.wait()
    finally:
        _stop(procs, grace_seconds)
        for reader in readers:
            reader.join(timeout=5)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if signals:
        line = said.get(0) or f"the {num_processes} processes stopped"
        raise interrupts.Interrupted(line.replace("sandbox train --resume", "sandbox launch --local "
                                                  f"{num_processes} --devices-per-process {devices_per_process} "
                                                  "-- train --resume"), signals[0])
    failed = [i for i, p in enumerate(procs) if p.returncode != 0 and i in said] or \
        [i for i, p in enumerate(procs) if p.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)]
    if failed:
        i = failed[0]
        what = said.get(i, f"it exited with code {procs[i].returncode}")
        others = "; the others were stopped" if num_processes > 1 else ""
        raise SandboxError(f"process {i} of {num_processes}: {what}{others}")


def _stop(procs, grace_seconds: float) -> None:
    """SIGTERM to every process still running, SIGKILL to any still there after `grace_seconds`."""
    import time

    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_seconds
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # subprocess.TimeoutExpired
            p.kill()
            p.wait()


def barrier(name: str, timeout: int = 600) -> None:
    """Wait until every process got here (a no-op for one process), e.g. until process 0 claimed the run folder.

    JAX's coordination-service barrier, not a device collective: gloo gives a collective's first use only
    30 s for all processes to arrive, while process 0 may be busy longer (checks, locking) on a loaded machine.
    """
    if jax.process_count() > 1:
        from jax._src import distributed as jax_distributed  # the client jax.distributed.initialize made

        jax_distributed.global_state.client.wait_at_barrier(f"sandbox:{name}", timeout * 1000)


def agree_max(name: str, value: int, timeout: int = 600) -> int:
    """The largest `value` any process brings under `name` (each name used once), the same in every process.

    Each process publishes its value in the coordination service's key-value store, then all meet at a barrier
    (as `barrier`: not a device collective, so a process that arrives late is waited for, not timed out after 30
    s), then each reads every value: all were written before anyone read. One process: `value` itself.
    """
    if jax.process_count() == 1:
        return value
    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    client.key_value_set(f"sandbox:{name}/{jax.process_index()}", str(int(value)))
    client.wait_at_barrier(f"sandbox:{name}", timeout * 1000)
    return max(int(v) for _, v in client.key_value_dir_get(f"sandbox:{name}/"))
