"""AppSpec validation rules (SPEC §1), fed with the appspec text a user would write."""

from __future__ import annotations

import textwrap

import pytest

from agent.errors import AppSpecInvalid
from agent.model.appspec import (
    AppSpec,
    FileMapping,
    HealthCheck,
    HookScript,
    ParsedAppSpec,
    Permission,
    SELinuxContext,
    analyze_appspec,
    parse_appspec,
)

HEAD = "version: 0.0\nos: linux\n"


def parse(body: str, **kwargs: object) -> ParsedAppSpec:
    return parse_appspec(HEAD + textwrap.dedent(body), **kwargs)  # type: ignore[arg-type]


def problems(text: str, *, head: bool = True) -> dict[str, str]:
    """path -> message of every problem (raises if the appspec is valid)."""
    with pytest.raises(AppSpecInvalid) as info:
        parse_appspec((HEAD if head else "") + textwrap.dedent(text))
    return dict(info.value.problems)


def test_full_appspec_becomes_the_model() -> None:
    parsed = parse(
        """
        files:
          - source: /
            destination: /opt/app/
          - source: config/app.ini
            destination: /etc/app
        file_exists_behavior: overwrite
        permissions:
          - object: /opt/app
            pattern: "*.sh"
            except: [skip.sh]
            type: [file]
            owner: www-data
            group: 33
            mode: 0755
            acls: [u:deploy:rwx, d:g:staff:r-x]
            context: {name: system_u, type: httpd_sys_content_t, range: s0}
        hooks:
          ApplicationStop:
            - location: scripts/stop.sh
          AfterInstall:
            - location: /scripts/configure.sh
              timeout: 300
              runas: deploy
            - location: scripts/second.sh
              timeout: "60"
        berth:
          health_check:
            url: http://127.0.0.1:8080/health
            body_contains: ok
          auto_rollback: true
        """
    )
    spec = parsed.spec
    assert parsed.warnings == ()
    assert spec.version == "0.0" and spec.os == "linux"
    assert spec.files == (FileMapping("/", "/opt/app"), FileMapping("config/app.ini", "/etc/app"))
    assert spec.files[0].relative_source == "."
    assert spec.file_exists_behavior == "OVERWRITE"
    assert spec.permissions == (
        Permission(
            object="/opt/app",
            pattern="*.sh",
            except_=("skip.sh",),
            types=("file",),
            owner="www-data",
            group="33",
            mode=0o755,
            acls=("u:deploy:rwx", "d:g:staff:r-x"),
            context=SELinuxContext(name="system_u", type="httpd_sys_content_t", range="s0"),
        ),
    )
    assert list(spec.hooks) == ["ApplicationStop", "AfterInstall"]
    assert spec.scripts("AfterInstall") == (
        HookScript("/scripts/configure.sh", 300, "deploy"),
        HookScript("scripts/second.sh", 60, None),
    )
    assert spec.scripts("AfterInstall")[0].relative_location == "scripts/configure.sh"
    assert spec.scripts("ApplicationStop") == (HookScript("scripts/stop.sh", 3600, None),)
    assert spec.scripts("ValidateService") == ()
    assert spec.berth.auto_rollback is True
    assert spec.berth.health_check == HealthCheck("http://127.0.0.1:8080/health", 200, "ok", 5.0, 3, 2.0)


def test_minimal_appspec_has_defaults() -> None:
    spec = parse("").spec
    assert spec == AppSpec()
    assert spec.berth.health_check is None and spec.berth.auto_rollback is False


@pytest.mark.parametrize("version", ["0.0", "0", '"0.0"', "0.00"])
def test_version_zero_is_accepted_as_number_or_string(version: str) -> None:
    assert parse_appspec(f"version: {version}\nos: linux\n").spec.version == "0.0"


@pytest.mark.parametrize("version", ["1.0", '"0"', "false", "[0.0]", '"latest"'])
def test_other_versions_name_the_value_and_the_fix(version: str) -> None:
    found = problems(f"version: {version}\nos: linux\n", head=False)
    assert "write `version: 0.0`" in found["version"]


def test_missing_version_and_os_are_both_reported() -> None:
    found = problems("files: []\n", head=False)
    assert set(found) == {"version", "os"}


def test_windows_is_unsupported_on_this_host() -> None:
    assert "unsupported on this host" in problems("version: 0.0\nos: windows\n", head=False)["os"]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("0644", 0o644), ("644", 0o644), ('"0644"', 0o644), ("'755'", 0o755), ("4755", 0o4755), ("0", 0), ("7", 7)],
)
def test_mode_is_read_as_the_octal_digits_written(mode: str, expected: int) -> None:
    spec = parse(f"permissions:\n  - object: /opt/app\n    mode: {mode}\n").spec
    assert spec.permissions[0].mode == expected


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("0999", "use only the digits 0-7"),
        ("648", "use only the digits 0-7"),
        ("00644", "more than 4 digits"),
        ('"0o644"', "not a mode"),
        ("rw-r--r--", "not a mode"),
        ("6.44", "not a mode"),
        ("[644]", "must be octal digits"),
        ("yes", "not a mode"),
    ],
)
def test_bad_modes_say_what_to_write(mode: str, says: str) -> None:
    found = problems(f"permissions:\n  - object: /opt/app\n    mode: {mode}\n")
    assert says in found["permissions[0].mode"]


def test_mode_comes_from_the_raw_text_even_through_a_merge_key() -> None:
    spec = parse(
        """
        defaults: &defaults {owner: root, mode: 0640}
        permissions:
          - <<: *defaults
            object: /opt/app
        """
    ).spec
    assert spec.permissions[0].mode == 0o640


def test_every_problem_is_collected_in_one_pass_with_its_path() -> None:
    found = problems(
        """
        files:
          - source: ../outside
            destination: relative
          - destination: /opt/x
        permissions:
          - object: opt/app
            type: [file, socket]
            owner: "a b"
        hooks:
          AfterInstall:
            - location: scripts/a.sh
              timeout: -1
            - timeout: 5
          BeforeInstall:
            location: scripts/b.sh
          DownloadBundle:
            - location: scripts/c.sh
          AfterInstal:
            - location: scripts/d.sh
        file_exists_behavior: KEEP
        """
    )
    assert set(found) == {
        "files[0].source",
        "files[0].destination",
        "files[1].source",
        "permissions[0].object",
        "permissions[0].type[1]",
        "permissions[0].owner",
        "hooks.AfterInstall[0].timeout",
        "hooks.AfterInstall[1].location",
        "hooks.BeforeInstall",
        "hooks.DownloadBundle",
        "hooks.AfterInstal",
        "file_exists_behavior",
    }
    assert "leaves the revision" in found["files[0].source"]
    assert "absolute" in found["files[0].destination"]
    assert "put `- ` before `location:`" in found["hooks.BeforeInstall"]
    assert "performed by berth itself" in found["hooks.DownloadBundle"]
    assert "did you mean 'AfterInstall'" in found["hooks.AfterInstal"]


@pytest.mark.parametrize(
    ("timeout", "says"),
    [("0", "at least 1 second"), ("-5", "at least 1 second"), ("five", "whole number"), ("true", "whole number"),
     ("1e999", "whole number"), ("999999999", "at most"), ("[1]", "whole number")],
)
def test_bad_timeouts(timeout: str, says: str) -> None:
    found = problems(f"hooks:\n  AfterInstall:\n    - location: s.sh\n      timeout: {timeout}\n")
    assert says in found["hooks.AfterInstall[0].timeout"]


def test_script_location_may_not_escape_or_name_the_root() -> None:
    found = problems(
        """
        hooks:
          AfterInstall:
            - location: ../../etc/cron.daily/x
            - location: scripts/../../x
            - location: /
        """
    )
    assert "leaves the revision" in found["hooks.AfterInstall[0].location"]
    assert "leaves the revision" in found["hooks.AfterInstall[1].location"]
    assert "revision root" in found["hooks.AfterInstall[2].location"]


def test_custom_events_are_accepted_only_when_named() -> None:
    text = "hooks:\n  MigrateDatabase:\n    - location: scripts/migrate.sh\n"
    assert "unknown lifecycle event" in problems(text)["hooks.MigrateDatabase"]
    spec = parse(text, custom_events=["MigrateDatabase"]).spec
    assert spec.scripts("MigrateDatabase")[0].location == "scripts/migrate.sh"


def test_custom_events_cannot_unlock_agent_events() -> None:
    with pytest.raises(AppSpecInvalid):
        parse("hooks:\n  Install:\n    - location: s.sh\n", custom_events=["Install"])


def test_unknown_keys_warn_but_stay_valid() -> None:
    parsed = parse(
        """
        Resources: []
        files:
          - source: a
            destination: /opt/a
            owner: root
        hooks:
          AfterInstall:
            - location: s.sh
              sudo: true
              user: x
        """
    )
    assert {w.path for w in parsed.warnings} == {"Resources", "files[0].owner", "hooks.AfterInstall[0].user"}
    assert all("ignored" in w.message for w in parsed.warnings)


def test_a_repeated_key_is_a_warning_naming_its_line() -> None:
    parsed = parse("hooks: {}\nhooks:\n  AfterInstall:\n    - location: s.sh\n")
    assert parsed.spec.scripts("AfterInstall")
    assert any("line 4" in w.message and "hooks" in w.message for w in parsed.warnings)


def test_warnings_travel_with_the_error() -> None:
    with pytest.raises(AppSpecInvalid) as info:
        parse_appspec(HEAD + "extra: 1\nfile_exists_behavior: 3\n")
    assert [p for p, _ in info.value.problems] == ["file_exists_behavior"]
    assert [p for p, _ in info.value.warnings] == ["extra"]


def test_duplicate_files_entry_is_an_error() -> None:
    found = problems("files:\n  - {source: a, destination: /x}\n  - {source: /a, destination: /x/}\n")
    assert "repeats files[0]" in found["files[1]"]


def test_permissions_rules() -> None:
    found = problems(
        """
        files:
          - {source: a, destination: /opt/app}
        permissions:
          - object: /opt/app
            pattern: "sub/*.sh"
            except: ["**.log"]
            type: []
          - object: /opt/app
            acls: [u:bob:rwz, "o::r", "x:y:z:w:r"]
            context: {name: system_u, range: s3-s1}
          - {object: /opt/app, group: -1, context: {type: "two words"}}
        """
    )
    assert "direct children" in found["permissions[0].pattern"]
    assert "'**' alone" in found["permissions[0].except[0]"]
    assert "empty list" in found["permissions[0].type"]
    assert "r, w, x" in found["permissions[1].acls[0]"]
    assert "set it with mode" in found["permissions[1].acls[1]"]
    assert "permissions[1].acls[2]" in found
    assert "is missing" in found["permissions[1].context.type"]
    assert "below the low one" in found["permissions[1].context.range"]
    assert "permissions[2].group" in found
    assert "permissions[2].context.type" in found


@pytest.mark.parametrize("acl", ["u:bob:rw", "user:bob:7", "g:staff:r-x", "m::rx", "mask:r", "d:u::rwx",
                                 "default:group:staff:r", "d:o::r", "bob:rw"])
def test_acl_entries_codedeploy_accepts(acl: str) -> None:
    spec = parse(f"permissions:\n  - object: /opt/app\n    acls: ['{acl}']\n").spec
    assert spec.permissions[0].acls == (acl,)


@pytest.mark.parametrize("srange", ["s0", "s0-s3", "s0:c0", "s0-s1:c0.c5,c7", "s2:c1023"])
def test_selinux_ranges_codedeploy_accepts(srange: str) -> None:
    spec = parse(f"permissions:\n  - object: /a\n    context: {{type: t, range: '{srange}'}}\n").spec
    assert spec.permissions[0].context == SELinuxContext(None, "t", srange)


@pytest.mark.parametrize("srange", ["s1-s0", "x0", "s0:c1024", "s0:c5.c1", "s0:c1,c1", "s0-s1-s2"])
def test_selinux_ranges_rejected(srange: str) -> None:
    found = problems(f"permissions:\n  - object: /a\n    context: {{type: t, range: '{srange}'}}\n")
    assert "permissions[0].context.range" in found


def test_permission_object_outside_every_destination_warns() -> None:
    parsed = parse("files:\n  - {source: a, destination: /opt/app}\npermissions:\n  - {object: /etc, mode: 644}\n")
    assert [w.path for w in parsed.warnings] == ["permissions[0].object"]
    assert "matches nothing" in parsed.warnings[0].message
    # An object above a destination still covers what is installed below it.
    assert parse("files:\n  - {source: a, destination: /opt/app}\npermissions:\n  - {object: /opt}\n").warnings == ()


def test_owner_and_group_accept_names_or_numeric_ids() -> None:
    perm = parse("permissions:\n  - {object: /a, owner: 0, group: www-data}\n").spec.permissions[0]
    assert (perm.owner, perm.group) == ("0", "www-data")


def test_type_defaults_to_both_and_accepts_a_single_word() -> None:
    spec = parse("permissions:\n  - {object: /a}\n  - {object: /b, type: directory}\n").spec
    assert spec.permissions[0].types == ("file", "directory")
    assert spec.permissions[1].types == ("directory",)


@pytest.mark.parametrize(
    ("health", "path", "says"),
    [
        ("{url: 'http://10.0.0.1/health'}", "berth.health_check.url", "another host"),
        ("{url: 'https://127.0.0.1/health'}", "berth.health_check.url", "http://"),
        ("{url: 'http://user:pw@localhost/'}", "berth.health_check.url", "user name"),
        ("{url: 'http://127.0.0.1:99999/'}", "berth.health_check.url", "not a valid URL"),
        ("{}", "berth.health_check.url", "is missing"),
        ("{url: 'http://[::1]:80/', expected_status: 700}", "berth.health_check.expected_status", "status code"),
        ("{url: 'http://localhost/', timeout: 0}", "berth.health_check.timeout", "more than 0"),
        ("{url: 'http://localhost/', interval: -1}", "berth.health_check.interval", "0 or more"),
        ("{url: 'http://localhost/', retries: 0}", "berth.health_check.retries", "number of tries"),
        ("{url: 'http://localhost/', body_contains: 5}", "berth.health_check.body_contains", "text"),
        ("{url: 'http://localhost/', helth: 1}", "berth.health_check.helth", "unknown berth setting"),
        ("[]", "berth.health_check", "mapping"),
    ],
)
def test_berth_health_check_rules(health: str, path: str, says: str) -> None:
    assert says in problems(f"berth:\n  health_check: {health}\n")[path]


def test_berth_unknown_keys_are_errors_with_a_suggestion() -> None:
    found = problems("berth:\n  auto_rolback: true\n  health_chek: {}\n")
    assert "did you mean 'auto_rollback'" in found["berth.auto_rolback"]
    assert "did you mean 'health_check'" in found["berth.health_chek"]
    assert "true or false" in problems("berth: {auto_rollback: maybe}\n")["berth.auto_rollback"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/health", "http://localhost/", "http://[::1]:9000/x?y=1"])
def test_berth_health_urls_on_this_host(url: str) -> None:
    health_check = parse(f"berth:\n  health_check:\n    url: '{url}'\n    timeout: 1.5\n").spec.berth.health_check
    assert health_check is not None and health_check.url == url and health_check.timeout == 1.5


def test_hooks_with_no_scripts_warn() -> None:
    parsed = parse("hooks:\n  AfterInstall:\n")
    assert parsed.spec.hooks == {"AfterInstall": ()}
    assert [w.path for w in parsed.warnings] == ["hooks.AfterInstall"]


def test_analysis_keeps_the_valid_parts_of_an_invalid_appspec() -> None:
    analysis = analyze_appspec(
        HEAD + "files:\n  - {source: a, destination: /x}\n  - {source: b}\n"
        "hooks:\n  AfterInstall:\n    - {location: s.sh, timeout: -1}\n"
    )
    assert not analysis.valid
    assert analysis.file_entries == (("files[0]", FileMapping("a", "/x")),)
    assert analysis.hook_entries == (("hooks.AfterInstall[0]", HookScript("s.sh")),)


def test_the_model_is_immutable() -> None:
    spec = parse("hooks:\n  AfterInstall:\n    - location: s.sh\n").spec
    with pytest.raises(TypeError):
        spec.hooks["X"] = ()  # type: ignore[index]
