"""Errors of the host package, each with the exit code ``python -m video_enhance_kit`` returns for it."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3


class RunnerError(Exception):
    """An error reported as one message (no traceback) and an exit code ``code``."""

    code = EXIT_FAILED

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(RunnerError, ValueError):
    """A bad argument: unreadable workflow file, bad ``--set``, bad ``--max-steps`` (exit code 2)."""

    code = EXIT_USAGE


class HostError(RunnerError, RuntimeError):
    """ComfyUI could not be found or started, the server is unreachable, or the pack failed to load (exit 3)."""

    code = EXIT_ENV


class HostRunError(RunnerError, RuntimeError):
    """A prompt failed validation or execution; the message names the node and the reason (exit 1)."""

    code = EXIT_FAILED
