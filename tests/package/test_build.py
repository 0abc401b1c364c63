"""What `make packages` produces, read back with dpkg-deb and rpm -qp (no installation)."""

from __future__ import annotations

import re

import pytest

from tests.package.conftest import Built, report
from tests.package.roots import run

pytestmark = [pytest.mark.package, pytest.mark.timeout(1200)]

COMPILED = re.compile(r"\.(so|pyd|dylib|dll)(\.|$)")


def _deb_files(deb: str) -> list[str]:
    out = run(["dpkg-deb", "-c", deb]).stdout
    return [line.split(None, 5)[5].removeprefix(".") for line in out.splitlines()]


def test_packages_are_named_and_built_as_documented(packages: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert packages.deb.name == f"berth-agent_{packages.version}_all.deb"
    assert packages.rpm.name == f"berth-agent-{packages.version}.noarch.rpm"
    report(capsys, f"[package] built {packages.deb.name} ({packages.deb.stat().st_size / 1e6:.1f} MB) and "
                   f"{packages.rpm.name} ({packages.rpm.stat().st_size / 1e6:.1f} MB) in {packages.seconds:.1f} s")


def test_deb_metadata_conffiles_and_scripts(packages: Built) -> None:
    deb = str(packages.deb)
    field = lambda name: run(["dpkg-deb", "-f", deb, name]).stdout.strip()  # noqa: E731
    assert field("Package") == "berth-agent"
    assert field("Architecture") == "all"
    assert field("Depends") == "python3 (>= 3.10)"
    assert run(["dpkg-deb", "-I", deb, "conffiles"]).stdout.split() == [
        "/etc/berth/agent.yml", "/etc/logrotate.d/berth-agent"]
    postinst = run(["dpkg-deb", "-I", deb, "postinst"]).stdout
    assert '"$MAINT" check' in postinst and "restart-if-idle" in postinst
    assert "systemctl start" not in postinst  # enabled, never started, on install


def test_deb_holds_a_private_pure_python_runtime(packages: Built) -> None:
    files = _deb_files(str(packages.deb))
    for expected in ("/usr/bin/berth", "/opt/berth/bin/berth", "/opt/berth/bin/python", "/opt/berth/lib/agent/",
                     "/opt/berth/lib/yaml/__init__.py", "/opt/berth/lib/boto3/__init__.py",
                     "/usr/lib/systemd/system/berth-agent.service", "/etc/berth/agent.yml",
                     "/etc/logrotate.d/berth-agent"):
        assert expected in files, expected
    assert not [f for f in files if COMPILED.search(f)], "compiled code would tie the package to one Python"
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pth"))]
    assert not [f for f in files if re.match(r"/opt/berth/lib/python3\.\d+|/opt/berth/lib/.*site-packages", f)], \
        "no version-specific folder (that is what breaks virtualenvs on a Python upgrade)"


def test_rpm_file_list_config_requires_and_scriptlets(packages: Built) -> None:
    rpm = str(packages.rpm)
    files = run(["rpm", "-qlp", rpm]).stdout.split()
    for expected in ("/usr/bin/berth", "/opt/berth/bin/berth", "/opt/berth/lib/agent/__init__.py",
                     "/usr/lib/systemd/system/berth-agent.service", "/etc/berth/agent.yml",
                     "/etc/logrotate.d/berth-agent", "/var/lib/berth", "/var/log/berth"):
        assert expected in files, expected
    assert not [f for f in files if COMPILED.search(f) or "__pycache__" in f]
    assert run(["rpm", "-qpc", rpm]).stdout.split() == ["/etc/berth/agent.yml", "/etc/logrotate.d/berth-agent"]
    assert run(["rpm", "-qp", "--qf", "%{ARCH}", rpm]).stdout == "noarch"
    requires = run(["rpm", "-qp", "--requires", rpm]).stdout.splitlines()
    assert "(python3 >= 3.10 or python3.11)" in requires
    scripts = run(["rpm", "-qp", "--scripts", rpm]).stdout
    post = scripts.split("postinstall scriptlet")[1].split("scriptlet (using")[0]
    assert re.search(r'if \[ "\$1" -eq 1 \]; then\s+/opt/berth/libexec/berth-maint enable', post)
    assert "berth-maint check" in post and "systemctl start" not in scripts
    assert "restart-if-idle" in scripts.split("postuninstall scriptlet")[1]
