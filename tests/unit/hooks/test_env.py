"""The environment hook scripts get: no AWS credentials of the agent, the deployment's variables added."""

from __future__ import annotations

import pwd

import pytest

from agent.hooks.env import RUNAS_PATH, hook_environment, is_credential_variable, login_environment

AGENT_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "token",
    "AWS_SECURITY_TOKEN": "token",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/var/run/tok",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/token",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/agent",
    "AWS_ROLE_SESSION_NAME": "agent",
    "AWS_PROFILE": "berth",
    "AWS_SHARED_CREDENTIALS_FILE": "/etc/berth/credentials",
    "AWS_CONFIG_FILE": "/etc/berth/aws-config",
}


def test_credentials_are_removed_and_region_kept() -> None:
    env = hook_environment(AGENT_ENV, {})
    assert not [k for k in env if k.startswith("AWS_") and k not in {"AWS_REGION", "AWS_DEFAULT_REGION"}]
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["LANG"] == "C.UTF-8"


def test_deployment_variables_are_added_and_win() -> None:
    extra = {
        "LIFECYCLE_EVENT": "AfterInstall",
        "DEPLOYMENT_ID": "d-123",
        "APPLICATION_NAME": "app",
        "DEPLOYMENT_GROUP_NAME": "prod",
        "DEPLOYMENT_GROUP_ID": "app/prod",
        "BUNDLE_BUCKET": "bucket",
        "BERTH_REVISION_ROOT": "/var/lib/berth/x/revision",
        "LANG": "en_US.UTF-8",
    }
    env = hook_environment(AGENT_ENV, extra)
    for key, value in extra.items():
        assert env[key] == value


def test_credentials_passed_as_extra_are_removed_too() -> None:
    env = hook_environment({}, {"AWS_SECRET_ACCESS_KEY": "x", "DEPLOYMENT_ID": "d-1"})
    assert env == {"DEPLOYMENT_ID": "d-1"}


def test_base_is_not_modified() -> None:
    base = dict(AGENT_ENV)
    hook_environment(base, {"DEPLOYMENT_ID": "d-1"})
    assert base == AGENT_ENV


@pytest.mark.parametrize(
    "name",
    ["AWS_ACCESS_KEY_ID", "aws_secret_access_key", "AWS_CONTAINER_CREDENTIALS_ANYTHING", "AWS_BEARER_TOKEN_BEDROCK"],
)
def test_credential_names(name: str) -> None:
    assert is_credential_variable(name)


@pytest.mark.parametrize("name", ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS", "HOME"])
def test_not_credential_names(name: str) -> None:
    assert not is_credential_variable(name)


@pytest.mark.parametrize(("name", "value"), [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0y")])
def test_impossible_variables_are_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="cannot be passed"):
        hook_environment({}, {name: value})


def test_login_environment_of_another_user() -> None:
    user = pwd.getpwnam("root")
    env = login_environment({"PATH": "/opt/agent/bin", "HOME": "/elsewhere", "KEEP": "1"}, user)
    assert env["HOME"] == user.pw_dir
    assert env["USER"] == env["LOGNAME"] == "root"
    assert env["SHELL"] == (user.pw_shell or "/bin/sh")
    assert env["PATH"] == RUNAS_PATH
    assert env["KEEP"] == "1"
