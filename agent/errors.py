"""One exception tree with stable codes (SPEC §3).

Every failure a user can see is a :class:`BerthError`: it carries the numeric ``code`` of SPEC §3's table and a
specific ``reason`` (the error name shown in reports, e.g. ``FileConflict``). Messages say what to change.
Deliberate shutdown is not an error: see :class:`Cancelled`, which derives from ``BaseException``.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Stable codes reported in event diagnostics (SPEC §3)."""

    SUCCESS = 0
    SCRIPT_MISSING = 1
    SCRIPT_NOT_EXECUTABLE = 2
    SCRIPT_TIMED_OUT = 3
    SCRIPT_FAILED = 4
    UNKNOWN_ERROR = 5
    OUTPUTS_LEFT_OPEN = 6
    FAILED_AFTER_RESTART = 7


# Names shown in reports for the codes that name themselves.
CODE_NAMES: dict[ErrorCode, str] = {
    ErrorCode.SUCCESS: "Success",
    ErrorCode.SCRIPT_MISSING: "ScriptMissing",
    ErrorCode.SCRIPT_NOT_EXECUTABLE: "ScriptNotExecutable",
    ErrorCode.SCRIPT_TIMED_OUT: "ScriptTimedOut",
    ErrorCode.SCRIPT_FAILED: "ScriptFailed",
    ErrorCode.UNKNOWN_ERROR: "UnknownError",
    ErrorCode.OUTPUTS_LEFT_OPEN: "OutputsLeftOpen",
    ErrorCode.FAILED_AFTER_RESTART: "FailedAfterRestart",
}


class BerthError(Exception):
    """Base of every user-facing failure. ``reason`` is the specific error name put in reports."""

    code: ErrorCode = ErrorCode.UNKNOWN_ERROR
    reason: str = "UnknownError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BerthError):
    """Bad invocation: a missing path, an unreadable file, contradicting options (CLI exit 2)."""

    reason = "UsageError"


class ConfigInvalid(BerthError):
    """The agent's configuration file has problems; ``problems`` holds ``file: key: message`` lines."""

    reason = "ConfigInvalid"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class AppSpecInvalid(BerthError):
    """The appspec has errors. ``problems``/``warnings`` are lists of (path, message) pairs."""

    reason = "AppSpecInvalid"

    def __init__(
        self,
        problems: list[tuple[str, str]],
        warnings: list[tuple[str, str]] | None = None,
    ) -> None:
        lines = [f"{path}: {msg}" if path else msg for path, msg in problems]
        super().__init__("invalid appspec: " + "; ".join(lines))
        self.problems = problems
        self.warnings = warnings or []


class ArchiveUnsafe(BerthError):
    """A revision archive tried to write outside its folder, held a device node, or broke a size cap."""

    reason = "ArchiveUnsafe"


class ArchiveCorrupt(BerthError):
    """A revision archive is truncated or is not of the type it claims to be."""

    reason = "ArchiveCorrupt"


class RevisionUnavailable(BerthError):
    """The revision could not be fetched (missing file or object, HTTP error, no free space)."""

    reason = "RevisionUnavailable"


class ChecksumMismatch(BerthError):
    """A downloaded revision's ETag or sha256 differs from what the command named."""

    reason = "ChecksumMismatch"


class FileConflict(BerthError):
    """DISALLOW: a destination file exists that the previous deployment did not install."""

    reason = "FileConflict"


class InstallFailed(BerthError):
    """Copying or setting permissions failed; the message names the path and the OS error."""

    reason = "InstallFailed"


class ToolMissing(BerthError):
    """The appspec needs a host tool (setfacl, semanage, restorecon) that is not installed."""

    reason = "ToolMissing"


class StateError(BerthError):
    """Host state is unreadable, of an unknown version, or locked by another deployment."""

    reason = "StateError"


class DeploymentLocked(StateError):
    """Another deployment of the same deployment group is running on this host."""

    reason = "DeploymentLocked"


class RollbackUnavailable(BerthError):
    """The revision to roll back to is not retained on this host any more (or never was)."""

    reason = "RollbackUnavailable"


class ScriptError(BerthError):
    """A lifecycle hook script failed; ``code`` is one of the script codes of SPEC §3."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = CODE_NAMES[code]


class Cancelled(BaseException):
    """The agent is stopping: the running deployment is ended on purpose (not an ``Exception``)."""

    def __init__(self, why: str = "agent stopping") -> None:
        super().__init__(why)
        self.why = why
