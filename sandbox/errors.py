"""The one error type users can cause: the CLI prints its message and exits 2."""


class SandboxError(Exception):
    """Bad input from the user (config, file, data, arguments), with a message saying what to do."""
