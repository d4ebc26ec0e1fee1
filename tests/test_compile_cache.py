"""The persistent compilation cache: on by default in the user's cache folder, off or moved by SANDBOX_COMPILE_CACHE.

JAX reads its cache folder once per process, so the real checks run a fresh interpreter that enables the cache
as every `sandbox` command does and jits one function.
"""

import os
import subprocess
import sys
from pathlib import Path

from sandbox import cli, compile_cache

SNIPPET = """
import jax, jax.numpy as jnp
from sandbox import compile_cache
print(compile_cache.enable())
print(jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((3, 3))).sum())
print(jax.config.jax_compilation_cache_dir)
"""


def _run(tmp_path: Path, **env) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in (compile_cache.ENV, "JAX_COMPILATION_CACHE_DIR")}
    proc = subprocess.run([sys.executable, "-c", SNIPPET], env={**base, "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                                                                "JAX_PLATFORMS": "cpu", **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split("\n")


def test_the_switch_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.folder({}) == tmp_path / "sandbox" / "jax"
    assert compile_cache.folder({compile_cache.ENV: "on"}) == tmp_path / "sandbox" / "jax"
    assert compile_cache.folder({compile_cache.ENV: str(tmp_path / "here")}) == tmp_path / "here"
    for off in ("0", "off", "False", " no "):
        assert compile_cache.folder({compile_cache.ENV: off}) is None


def test_on_by_default_programs_land_in_the_user_cache_folder(tmp_path):
    enabled, total, dir_in_use, _ = _run(tmp_path)
    folder = tmp_path / "xdg" / "sandbox" / "jax"
    assert enabled == dir_in_use == str(folder)
    assert float(total) != 0  # the function ran
    assert any(p.name.startswith("jit_") for p in folder.iterdir())  # its compiled program was written


def test_switched_off_no_folder_is_set_or_written(tmp_path):
    enabled, _, dir_in_use, _ = _run(tmp_path, **{compile_cache.ENV: "0"})
    assert enabled == dir_in_use == "None"
    assert not (tmp_path / "xdg").exists()


def test_every_command_enables_it_first(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(compile_cache, "enable", lambda: calls.append("cache"))
    monkeypatch.setattr("sandbox.cli.list.run", lambda args: calls.append("command") or 0)
    assert cli.main(["list", "experiments"]) == 0
    assert calls == ["cache", "command"]
