"""The persistent compilation cache: an XLA program compiled once is read back by later commands.

On CPU, compiling is most of a short command's time (the train step, the Lanczos programs). JAX can
keep compiled executables on disk, keyed by the program, its shapes, the jax version and the devices;
`enable` turns that on for every `sandbox` command, in the user's cache folder (platformdirs:
`~/.cache/sandbox/jax` on Linux, honoring XDG_CACHE_HOME). The switch is the environment variable
SANDBOX_COMPILE_CACHE: unset (or 1/on) for that folder, 0 (or off) for no cache, or a folder to use.
A folder set through JAX's own JAX_COMPILATION_CACHE_DIR is kept when the switch is unset. The folder
only grows (a few MB per new model shape); deleting it is always safe.
"""

import os
from pathlib import Path

import platformdirs

ENV = "SANDBOX_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")
ON = ("", "1", "on", "true", "yes")
MIN_COMPILE_SECONDS = 0.0  # cache every program: even a 0.1 s compile costs more than reading it back


def default_folder() -> Path:
    return Path(platformdirs.user_cache_dir("sandbox")) / "jax"


def folder(environ=os.environ) -> Path | None:
    """The folder SANDBOX_COMPILE_CACHE in `environ` asks for; None when it turns the cache off."""
    value = environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    return default_folder() if value.lower() in ON else Path(value).expanduser()


def enable(environ=os.environ) -> Path | None:
    """Point JAX's persistent cache at `folder(environ)` (call before the first compilation) and return
    the folder in use; None when the cache is off."""
    import jax

    own = jax.config.jax_compilation_cache_dir
    if ENV not in environ and own:
        return Path(own)
    path = folder(environ)
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            if ENV in environ:  # a folder the user named: say why it cannot be used
                raise
            path = None  # the default folder (a read-only home, ...): run without a cache
    jax.config.update("jax_compilation_cache_dir", None if path is None else str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
