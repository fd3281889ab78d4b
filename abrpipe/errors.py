"""One error tree and one exit-code table for the whole program.

Domain code raises these; only the CLI turns them into a line on stderr and an exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # unexpected internal error (a bug: run with --debug and report it)
    USAGE = 2  # bad command-line usage (click's own code)
    INPUT = 3  # the input is missing, unreadable, not media, or refused
    PROFILE = 4  # a profile or jobs file is invalid or unknown
    OUTPUT = 5  # the output cannot be written
    ENCODE = 6  # ffmpeg failed
    VALIDATION = 7  # the result failed validation
    BATCH_FAILED = 8  # some jobs of a batch failed
    DEPENDENCY = 9  # ffmpeg/ffprobe (or another external tool) missing or too old
    INTERRUPTED = 130  # Ctrl-C or SIGTERM


class AbrpipeError(Exception):
    """Base of every expected failure: `message` says what and where, `hint` what to do."""

    exit_code: int = ExitCode.ERROR  # an ExitCode; subclasses may set another code (143) per instance

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(AbrpipeError):
    """A command-line option's value is wrong: one line naming the option (click's own usage errors
    also exit 2)."""

    exit_code = ExitCode.USAGE


class InputError(AbrpipeError):
    exit_code = ExitCode.INPUT


class ProfileError(AbrpipeError):
    exit_code = ExitCode.PROFILE


class OutputError(AbrpipeError):
    exit_code = ExitCode.OUTPUT


class DependencyError(AbrpipeError):
    exit_code = ExitCode.DEPENDENCY


class ValidationFailed(AbrpipeError):
    exit_code = ExitCode.VALIDATION


class Interrupted(AbrpipeError):
    exit_code = ExitCode.INTERRUPTED


class EncodeError(AbrpipeError):
    """ffmpeg exited non-zero: carries the evidence (command, exit code, stderr tail, log path)."""

    exit_code = ExitCode.ENCODE

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stderr_tail: str = "",
        log_path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv or []
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.log_path = log_path
