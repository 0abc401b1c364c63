"""The environment a hook script sees (SPEC §3): the agent's own minus AWS credentials, plus the deployment's.

Scripts must not run with the agent's identity: they get the instance's own credentials the usual way (instance
profile, their user's ``~/.aws``), never the keys or the credential pointers the agent itself was started with.
"""

from __future__ import annotations

import pwd
from collections.abc import Mapping

# Variables that hold AWS credentials or tell an SDK where to find the agent's: every SDK and the CLI read these.
# AWS_REGION / AWS_DEFAULT_REGION and endpoint settings are deliberately kept.
CREDENTIAL_VARIABLES = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",  # legacy name of the session token (boto2, older SDKs)
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_ACCESS_KEY",  # legacy EC2 API tools
        "AWS_SECRET_KEY",
        "AWS_DELEGATION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_PROFILE",  # a named profile selects the agent's credentials from its credentials file
        "AWS_DEFAULT_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",  # may hold keys, credential_process or role_arn of the agent's profile
        "AWS_CREDENTIAL_FILE",  # legacy EC2/IAM CLI tools
        "AWS_CREDENTIALS_FILE",
    }
)
# Whole families: ECS/EKS container credential endpoints and their authorization tokens, bearer-token API keys.
CREDENTIAL_PREFIXES = (
    "AWS_CONTAINER_CREDENTIALS_",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_BEARER_TOKEN_",
)

# PATH for a script run as another user: what a login shell gives on Debian/RHEL (no agent-specific folders).
RUNAS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def is_credential_variable(name: str) -> bool:
    """Whether ``name`` holds AWS credentials (or points an SDK at them) and must not reach a hook script."""
    upper = name.upper()
    return upper in CREDENTIAL_VARIABLES or upper.startswith(CREDENTIAL_PREFIXES)


def strip_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` without the AWS credential variables (see :data:`CREDENTIAL_VARIABLES`)."""
    return {k: v for k, v in env.items() if not is_credential_variable(k)}


def hook_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a hook script: ``base`` (usually ``os.environ``) minus AWS credentials, plus ``extra``.

    ``extra`` is what the caller builds for the event (``LIFECYCLE_EVENT``, ``DEPLOYMENT_ID``, ``APPLICATION_NAME``,
    ``DEPLOYMENT_GROUP_NAME``, ``DEPLOYMENT_GROUP_ID``, ``BUNDLE_*``, ``BERTH_*``); it wins over ``base``. Credential
    variables are removed from ``extra`` too: a hook never gets them, whoever asks. Raises ``ValueError`` for a
    name or value no process environment can hold (empty, ``=`` in a name, NUL anywhere).
    """
    env = strip_credentials(base)
    for name, value in extra.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"environment variable {name!r} cannot be passed to a hook script")
        if not is_credential_variable(name):
            env[name] = value
    return env


def login_environment(env: Mapping[str, str], user: pwd.struct_passwd) -> dict[str, str]:
    """``env`` with the login variables of ``user`` (HOME, USER, LOGNAME, SHELL, PATH), as ``su`` would set them."""
    out = dict(env)
    out.update(
        HOME=user.pw_dir or "/",
        USER=user.pw_name,
        LOGNAME=user.pw_name,
        SHELL=user.pw_shell or "/bin/sh",
        PATH=RUNAS_PATH,
    )
    return out
