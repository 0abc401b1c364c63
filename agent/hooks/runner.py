"""Run the scripts of one lifecycle event (SPEC §3).

Scripts run in listed order; the first failure fails the event and the rest do not run. Each script runs as the
leader of its own session with stdin on ``/dev/null``, in the revision root it came from, optionally as another
user; its output goes line by line to the deployment's scripts.log (and the caller's ``on_line``). A failed event
returns :class:`~agent.model.report.Diagnostics` with the last 2048 bytes of that event's output.

The caller (the engine) builds the environment with :func:`hook_environment` and the :class:`ScriptLog`; it reacts
to ``error_name == "AgentStopping"`` (cancellation) by stopping the deployment.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import stat
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import CODE_NAMES, ErrorCode
from agent.hooks.env import hook_environment, login_environment, strip_credentials
from agent.hooks.output import LogTail
from agent.hooks.procs import describe_status, kill_process_group
from agent.hooks.scriptlog import ScriptLog
from agent.hooks.supervise import ProcessResult, Supervisor
from agent.model.report import Diagnostics

__all__ = [
    "EventOutcome",
    "Script",
    "ScriptLog",
    "hook_environment",
    "kill_process_group",
    "run_event",
]

logger = logging.getLogger(__name__)

AGENT_STOPPING = "AgentStopping"


@dataclass(frozen=True)
class Script:
    """One hook entry: ``location`` as the appspec wrote it (for logs and reports), ``path`` the file to run.

    ``timeout`` is in seconds. ``runas`` is a user name (or numeric uid) to run as; ``None`` runs as the agent.
    The appspec's ``sudo`` key means the same as ``runas``: the caller maps it here.
    """

    location: str
    path: Path
    timeout: float
    runas: str | None = None


@dataclass(frozen=True)
class EventOutcome:
    """What :func:`run_event` reports: ``diagnostics`` is set exactly when ``ok`` is false.

    ``warnings`` are for the deployment report (a script made executable, processes left holding output).
    """

    ok: bool
    diagnostics: Diagnostics | None
    warnings: tuple[str, ...]


class _Fail(Exception):
    """A script failed; turned into Diagnostics by run_event."""

    def __init__(self, code: ErrorCode, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name or CODE_NAMES[code]
        self.message = message


def run_event(
    event: str,
    scripts: Sequence[Script],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: ScriptLog,
    kill_grace: float = 30.0,
    output_grace: float = 2.0,
    cancel: threading.Event | None = None,
    on_spawn: Callable[[int], None] | None = None,
) -> EventOutcome:
    """Run ``scripts`` of ``event`` in order, stopping at the first failure.

    ``cwd`` is the root of the revision the scripts belong to; ``env`` the environment built with
    :func:`hook_environment` (AWS credential variables are removed again here, whatever the caller passes).
    ``kill_grace``: seconds between SIGTERM and SIGKILL of a script's process group (timeout or cancel).
    ``output_grace``: seconds to keep reading after a script exits while something it started still holds its
    output; then berth stops reading, warns with the lingering pids and judges the script by its exit code.
    ``cancel``: when set while a script runs, its group is ended and the outcome fails with code 5,
    ``AgentStopping``. ``on_spawn(pid)`` is called as soon as each script starts; its process group id equals
    ``pid``. An exception from ``on_spawn`` or from the log's ``on_line`` kills the script's group and propagates.
    """
    if not scripts:
        return EventOutcome(ok=True, diagnostics=None, warnings=())
    clean_env = strip_credentials(env)
    tail = LogTail()
    warnings: list[str] = []
    log.event(event)
    for script in scripts:
        try:
            if cancel is not None and cancel.is_set():
                raise _Fail(ErrorCode.UNKNOWN_ERROR, "agent stopping", AGENT_STOPPING)
            log.script(script.location)
            _run_script(
                event,
                script,
                cwd=cwd,
                env=clean_env,
                log=log,
                tail=tail,
                warnings=warnings,
                kill_grace=kill_grace,
                output_grace=output_grace,
                cancel=cancel,
                on_spawn=on_spawn,
            )
        except _Fail as fail:
            diag = Diagnostics(
                error_code=int(fail.code),
                error_name=fail.name,
                message=fail.message,
                script_name=script.location,
                log_tail=tail.text(),
            )
            return EventOutcome(ok=False, diagnostics=diag, warnings=tuple(warnings))
    return EventOutcome(ok=True, diagnostics=None, warnings=tuple(warnings))


def _run_script(
    event: str,
    script: Script,
    *,
    cwd: Path,
    env: dict[str, str],
    log: ScriptLog,
    tail: LogTail,
    warnings: list[str],
    kill_grace: float,
    output_grace: float,
    cancel: threading.Event | None,
    on_spawn: Callable[[int], None] | None,
) -> None:
    warning = _ensure_executable(script, cwd)
    if warning:
        warnings.append(f"{event}: {warning}")
    creds, script_env = _identity(script, env)
    proc = _spawn(script, cwd, script_env, creds)
    if on_spawn is not None:
        try:
            on_spawn(proc.pid)
        except BaseException:
            kill_process_group(proc.pid, grace=0)
            proc.wait()
            raise

    def on_lines(stream: str, lines: list[str]) -> None:
        for line in lines:
            tail.add(stream, line)
        log.output(event, stream, lines)

    result = Supervisor(
        proc,
        timeout=script.timeout,
        kill_grace=kill_grace,
        output_grace=output_grace,
        cancel=cancel,
        on_lines=on_lines,
    ).run()
    if result.returncode is not None:
        logger.debug("%s: script %s %s", event, script.location, describe_status(result.returncode))
    _judge(event, script, result, kill_grace=kill_grace, output_grace=output_grace, warnings=warnings)


def _judge(
    event: str, script: Script, result: ProcessResult, *, kill_grace: float, output_grace: float, warnings: list[str]
) -> None:
    loc = script.location
    if result.cancelled:
        raise _Fail(ErrorCode.UNKNOWN_ERROR, "agent stopping", AGENT_STOPPING)
    if result.timed_out:
        how = (
            f"; it was still running {kill_grace:g} s after SIGTERM and was killed with SIGKILL"
            if result.killed
            else "; its process group was sent SIGTERM"
        )
        raise _Fail(
            ErrorCode.SCRIPT_TIMED_OUT,
            f"script {loc} timed out after {script.timeout:g} s{how}. Make it finish sooner or raise its timeout "
            "in the appspec",
        )
    if result.left_open:
        who = ", ".join(f"pid {pid} ({comm})" for pid, comm in result.lingering) or "a process outside its session"
        warnings.append(
            f"{event}: script {loc} exited but {who} still held its output; berth stopped reading after "
            f"{output_grace:g} s and left them running. Redirect the output of background commands "
            "(e.g. `cmd >/dev/null 2>&1 &`)"
        )
    if result.returncode is None:
        raise _Fail(
            ErrorCode.SCRIPT_FAILED,
            f"script {loc} could not be ended even with SIGKILL (stuck in the kernel, e.g. on a hung mount)",
        )
    if result.returncode != 0:
        raise _Fail(ErrorCode.SCRIPT_FAILED, f"script {loc} {describe_status(result.returncode)}")


def _ensure_executable(script: Script, root: Path) -> str | None:
    """Fail if the script is missing; give it +x if it has no execute bit (as CodeDeploy does) and say so."""
    loc = script.location
    try:
        st = script.path.stat()
    except OSError:
        raise _Fail(
            ErrorCode.SCRIPT_MISSING, f"script {loc} does not exist in the revision (looked for {script.path})"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise _Fail(ErrorCode.SCRIPT_MISSING, f"script {loc} is not a regular file ({script.path})")
    if st.st_mode & 0o111:
        return None
    try:
        inside = script.path.resolve().is_relative_to(root.resolve())
    except OSError:
        inside = False
    if not inside:
        raise _Fail(
            ErrorCode.SCRIPT_NOT_EXECUTABLE,
            f"script {loc} is not executable and resolves outside the revision; berth only changes the "
            "revision's own files: make the target executable",
        )
    try:
        # a+x like CodeDeploy's chmod("+x"): the script may run as another user (runas).
        os.chmod(script.path, stat.S_IMODE(st.st_mode) | 0o111)  # noqa: S103
    except OSError as exc:
        raise _Fail(
            ErrorCode.SCRIPT_NOT_EXECUTABLE,
            f"script {loc} is not executable and could not be made so ({exc.strerror}); set its mode in the "
            "revision (chmod +x)",
        ) from None
    return f"script {loc} was not executable; berth made it executable (chmod +x). Set its mode in the revision"


def _identity(script: Script, env: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Popen keyword arguments switching to ``runas`` (none without it) and the environment for that user."""
    if script.runas is None:
        return {}, env
    user = _lookup_user(script.runas)
    script_env = login_environment(env, user)
    if user.pw_uid == os.geteuid():
        return {}, script_env  # already that user: nothing to switch
    if os.geteuid() != 0:
        raise _Fail(
            ErrorCode.UNKNOWN_ERROR,
            f"script {script.location} has runas {script.runas!r} but berth runs as uid {os.geteuid()}, not "
            "root; run the agent as root or remove runas",
            "RunAsNotPermitted",
        )
    groups = os.getgrouplist(user.pw_name, user.pw_gid)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": groups}, script_env


def _lookup_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if name.isdigit():
        try:
            return pwd.getpwuid(int(name))
        except KeyError:
            pass
    raise _Fail(
        ErrorCode.UNKNOWN_ERROR,
        f"runas user {name!r} does not exist on this host; create the user or change runas in the appspec",
        "RunAsUserUnknown",
    )


def _spawn(script: Script, cwd: Path, env: Mapping[str, str], creds: Mapping[str, Any]) -> subprocess.Popen[bytes]:
    if not cwd.is_dir():
        raise _Fail(ErrorCode.UNKNOWN_ERROR, f"revision root {cwd} does not exist", "ScriptStartFailed")
    argv = [str(script.path)]
    for attempt in (1, 2):
        try:
            return subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                **creds,
            )
        except OSError as exc:
            if exc.errno == errno.ENOEXEC and attempt == 1:
                # No #! line: run it with /bin/sh, as execvp(3) and the CodeDeploy agent (Ruby) do.
                argv = ["/bin/sh", str(script.path)]
                continue
            raise _start_failure(script, exc, creds) from None
    raise AssertionError("unreachable")


def _start_failure(script: Script, exc: OSError, creds: Mapping[str, Any]) -> _Fail:
    loc = script.location
    if exc.errno in (errno.EACCES, errno.EPERM):
        who = f"user {script.runas}" if creds else "the agent"
        return _Fail(
            ErrorCode.SCRIPT_NOT_EXECUTABLE,
            f"script {loc} cannot be executed by {who}: {exc.strerror}. Check the mode of the script and of its "
            "folders, and that the file system is not mounted noexec",
        )
    if exc.errno == errno.ENOENT:
        interpreter = _interpreter(script.path)
        hint = f"its interpreter {interpreter} does not exist" if interpreter else "it could not be found"
        return _Fail(
            ErrorCode.UNKNOWN_ERROR,
            f"script {loc} could not start: {hint}; fix its #! line or install the interpreter",
            "ScriptStartFailed",
        )
    return _Fail(ErrorCode.UNKNOWN_ERROR, f"script {loc} could not start: {exc}", "ScriptStartFailed")


def _interpreter(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].strip().split()
    return parts[0].decode("utf-8", "replace") if parts else None
