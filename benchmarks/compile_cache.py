"""`sandbox run quickstart` from a cold compilation cache, then again from the warm one, side by side.

Each run is a fresh `sandbox` process with SANDBOX_COMPILE_CACHE pointing at one new, empty folder; a
third run with the cache off shows what compiling costs without it. Prints wall and CPU seconds (CPU
time includes the command's own threads; it flatters nothing on a loaded machine) and the ratios.
Run: python benchmarks/compile_cache.py [--quick]
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(args: list[str], cache: str) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one `sandbox` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sandbox", *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "SANDBOX_COMPILE_CACHE": cache})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quickstart's quick variant")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "cache")
        rows = []
        for label, setting in (("cold cache", cache), ("warm cache", cache), ("cache off", "0")):
            out = Path(tmp) / label.replace(" ", "-")
            wall, cpu = timed(["run", "quickstart", "--no-progress", "--out", str(out), *(["--quick"] * args.quick)],
                              setting)
            rows.append((label, wall, cpu))
            print(f"{label:10s}  wall {wall:7.1f} s  CPU {cpu:7.1f} s", flush=True)
    cold = rows[0]
    for label, wall, cpu in rows[1:]:
        print(f"{label} / cold: wall {wall / cold[1]:.2f}x, CPU {cpu / cold[2]:.2f}x")
    print(f"load average after:  {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
