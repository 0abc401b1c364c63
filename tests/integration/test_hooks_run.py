"""Hook scripts run for real: order, failures, environment, working directory, stdin, process group, runas."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.hooks.runner import EventOutcome, Script, ScriptLog, hook_environment, run_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def write(root: Path, name: str, body: str, *, mode: int = 0o755, shebang: str = "#!/bin/sh\n") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(shebang + body)
    path.chmod(mode)
    return path


def run(
    root: Path,
    *scripts: Script,
    event: str = "AfterInstall",
    env: dict[str, str] | None = None,
    **kw: object,
) -> tuple[EventOutcome, str]:
    log_path = root.parent / "logs" / "scripts.log"
    with ScriptLog(log_path) as log:
        outcome = run_event(
            event,
            scripts,
            cwd=root,
            env=env if env is not None else hook_environment(os.environ, {}),
            log=log,
            kill_grace=1.0,
            output_grace=0.5,
            **kw,  # type: ignore[arg-type]
        )
    return outcome, log_path.read_text()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rev = tmp_path / "revision"
    rev.mkdir()
    return rev


def test_success(root: Path) -> None:
    s = write(root, "scripts/ok.sh", "echo hello\n")
    outcome, logged = run(root, Script("scripts/ok.sh", s, 10))
    assert outcome.ok
    assert outcome.diagnostics is None
    assert outcome.warnings == ()
    assert "[stdout]hello" in logged


def test_scripts_run_in_order_and_the_first_failure_stops_the_event(root: Path) -> None:
    a = write(root, "a.sh", "echo first\n")
    b = write(root, "b.sh", "echo second; echo broken >&2; exit 1\n")
    c = write(root, "c.sh", "echo third\n")
    outcome, logged = run(root, Script("a.sh", a, 10), Script("b.sh", b, 10), Script("c.sh", c, 10))
    assert not outcome.ok
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name, d.script_name) == (4, "ScriptFailed", "b.sh")
    assert "exited with status 1" in d.message
    assert d.log_tail == "[stdout]first\n[stdout]second\n[stderr]broken"
    assert logged.index("first") < logged.index("second")
    assert "third" not in logged
    assert "Script - c.sh" not in logged


def test_killed_by_a_signal(root: Path) -> None:
    s = write(root, "crash.sh", "kill -KILL $$\n")
    outcome, _ = run(root, Script("crash.sh", s, 10))
    assert outcome.diagnostics is not None
    assert outcome.diagnostics.error_code == 4
    assert "killed by signal SIGKILL" in outcome.diagnostics.message


def test_missing_script(root: Path) -> None:
    outcome, logged = run(root, Script("scripts/nope.sh", root / "scripts/nope.sh", 10))
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name, d.script_name) == (1, "ScriptMissing", "scripts/nope.sh")
    assert "scripts/nope.sh" in d.message
    assert "Script - scripts/nope.sh" in logged


def test_directory_is_not_a_script(root: Path) -> None:
    (root / "scripts").mkdir()
    outcome, _ = run(root, Script("scripts", root / "scripts", 10))
    assert outcome.diagnostics is not None and outcome.diagnostics.error_code == 1


def test_not_executable_is_made_executable_with_a_warning(root: Path) -> None:
    s = write(root, "plain.sh", "echo ran\n", mode=0o644)
    outcome, logged = run(root, Script("plain.sh", s, 10))
    assert outcome.ok
    assert stat.S_IMODE(s.stat().st_mode) == 0o755
    assert len(outcome.warnings) == 1
    assert "plain.sh" in outcome.warnings[0] and "executable" in outcome.warnings[0]
    assert "[stdout]ran" in logged


def test_not_executable_link_out_of_the_revision_is_not_changed(root: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "outside.sh", "echo no\n", mode=0o644)
    (root / "link.sh").symlink_to(outside)
    outcome, _ = run(root, Script("link.sh", root / "link.sh", 10))
    assert outcome.diagnostics is not None
    assert (outcome.diagnostics.error_code, outcome.diagnostics.error_name) == (2, "ScriptNotExecutable")
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


def test_script_without_shebang_runs_with_sh(root: Path) -> None:
    s = write(root, "bare.sh", "echo bare $((1+1))\n", shebang="")
    outcome, logged = run(root, Script("bare.sh", s, 10))
    assert outcome.ok
    assert "[stdout]bare 2" in logged


def test_missing_interpreter_is_named(root: Path) -> None:
    s = write(root, "py.sh", "print(1)\n", shebang="#!/usr/bin/no-such-python\n")
    outcome, _ = run(root, Script("py.sh", s, 10))
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name) == (5, "ScriptStartFailed")
    assert "/usr/bin/no-such-python" in d.message


def test_working_directory_and_environment(root: Path) -> None:
    s = write(
        root,
        "scripts/env.sh",
        'pwd; echo "event=$LIFECYCLE_EVENT id=$DEPLOYMENT_ID app=$APPLICATION_NAME"\n'
        'echo "group=$DEPLOYMENT_GROUP_NAME gid=$DEPLOYMENT_GROUP_ID root=$BERTH_REVISION_ROOT"\n'
        'echo "region=$AWS_REGION"\n'
        "env | grep -c -E '^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|CONTAINER_CREDENTIALS_|ROLE_ARN)'"
        " || true\n",
    )
    base = dict(os.environ)
    base.update(
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_SESSION_TOKEN="token",
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/v2/x",
        AWS_ROLE_ARN="arn:aws:iam::1:role/r",
        AWS_REGION="eu-central-1",
    )
    extra = {
        "LIFECYCLE_EVENT": "AfterInstall",
        "DEPLOYMENT_ID": "d-42",
        "APPLICATION_NAME": "shop",
        "DEPLOYMENT_GROUP_NAME": "prod",
        "DEPLOYMENT_GROUP_ID": "shop/prod",
        "BERTH_REVISION_ROOT": str(root),
    }
    outcome, logged = run(root, Script("scripts/env.sh", s, 10), env=hook_environment(base, extra))
    assert outcome.ok
    assert f"[stdout]{root}\n" in logged
    assert "[stdout]event=AfterInstall id=d-42 app=shop\n" in logged
    assert f"[stdout]group=prod gid=shop/prod root={root}\n" in logged
    assert "[stdout]region=eu-central-1\n" in logged
    assert "[stdout]0\n" in logged  # no credential variable reached the script


def test_credentials_are_removed_even_if_the_caller_passes_them(root: Path) -> None:
    s = write(root, "env.sh", 'echo "key=${AWS_SECRET_ACCESS_KEY:-none}"\n')
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY="secret")
    _, logged = run(root, Script("env.sh", s, 10), env=env)
    assert "[stdout]key=none" in logged


def test_stdin_is_dev_null(root: Path) -> None:
    # `cat` would block forever on an inherited terminal or pipe; on /dev/null it ends at once.
    s = write(root, "stdin.sh", 'readlink /proc/self/fd/0; echo "read=[$(cat)]"\n')
    outcome, logged = run(root, Script("stdin.sh", s, 10))
    assert outcome.ok
    assert "[stdout]/dev/null\n" in logged
    assert "[stdout]read=[]\n" in logged


def test_own_session_and_process_group(root: Path) -> None:
    s = write(root, "pg.sh", 'set -- $(cut -d")" -f2 /proc/$$/stat); echo "pid=$$ pgid=$3 sid=$4"\n')
    spawned: list[int] = []
    outcome, logged = run(root, Script("pg.sh", s, 10), on_spawn=spawned.append)
    assert outcome.ok
    assert len(spawned) == 1
    pid = spawned[0]
    assert pid != os.getpgrp()
    assert f"[stdout]pid={pid} pgid={pid} sid={pid}\n" in logged


def test_cancelled_before_the_script_starts(root: Path) -> None:
    import threading

    s = write(root, "never.sh", "echo ran\n")
    cancel = threading.Event()
    cancel.set()
    outcome, logged = run(root, Script("never.sh", s, 10), cancel=cancel)
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name, d.message) == (5, "AgentStopping", "agent stopping")
    assert "ran" not in logged


def test_no_scripts_is_success_and_logs_nothing(root: Path) -> None:
    outcome, logged = run(root)
    assert outcome.ok
    assert logged == ""


def test_unknown_runas_user(root: Path) -> None:
    s = write(root, "who.sh", "id\n")
    outcome, logged = run(root, Script("who.sh", s, 10, runas="no-such-user-berth"))
    d = outcome.diagnostics
    assert d is not None
    assert (d.error_code, d.error_name, d.script_name) == (5, "RunAsUserUnknown", "who.sh")
    assert "no-such-user-berth" in d.message
    assert "uid=" not in logged


@pytest.fixture
def traversable(tmp_path: Path) -> Iterator[None]:
    """Let other users reach tmp_path (search permission on its ancestors), as they can reach /var/lib/berth."""
    changed: list[tuple[Path, int]] = []
    for p in [tmp_path, *tmp_path.parents]:
        if p == Path("/"):
            break
        mode = stat.S_IMODE(p.stat().st_mode)
        if not mode & stat.S_IXOTH:
            changed.append((p, mode))
            p.chmod(mode | stat.S_IXOTH)
    try:
        yield
    finally:
        for p, mode in changed:
            p.chmod(mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
@pytest.mark.usefixtures("traversable")
def test_runas_nobody(root: Path) -> None:
    user = pwd.getpwnam("nobody")
    s = write(
        root,
        "who.sh",
        'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"\n'
        'echo "home=$HOME user=$USER logname=$LOGNAME shell=$SHELL"\n'
        'echo "path=$PATH"\n'
        "pwd\n",
    )
    outcome, logged = run(root, Script("who.sh", s, 10, runas="nobody"))
    assert outcome.ok, outcome.diagnostics
    groups = " ".join(str(g) for g in sorted(set(os.getgrouplist("nobody", user.pw_gid))))
    assert f"[stdout]uid={user.pw_uid} gid={user.pw_gid} groups={groups}\n" in logged
    assert f"[stdout]home={user.pw_dir} user=nobody logname=nobody shell={user.pw_shell}\n" in logged
    assert "[stdout]path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" in logged
    assert f"[stdout]{root}\n" in logged
    assert grp.getgrgid(0).gr_name not in logged.split("groups=")[1].split("\n")[0]
