"""AWS access in one place: region, instance identity, IMDSv2, and boto3 clients (SPEC §3, §4).

* Region: the agent's configuration, then ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, then the instance metadata
  service (IMDSv2 only). Instance id: the configuration (on-premises), then IMDSv2.
* Clients: one boto3 session, clients cached per service, each with the region, an optional endpoint override
  (VPC endpoint, FIPS endpoint, a local test server) and botocore's *standard* retry mode — berth never wraps a
  boto3 call in a retry loop of its own. Proxies come from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` in the
  environment, which botocore honours by default; berth passes no ``proxies=`` that would override that.
* The metadata service is never reached through a proxy and never with IMDSv1.
* Hook scripts never see the agent's credential variables: :mod:`agent.hooks.env` strips them.

Importing this module is cheap: boto3 is imported only when a client is first asked for, so a local deployment
never imports it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent import __version__
from agent.errors import ConfigInvalid

log = logging.getLogger(__name__)

DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"

@dataclass(frozen=True)
class AwsSettings:
    """How berth reaches AWS; built from the agent configuration.

    ``endpoints`` maps a boto3 service name (``s3``, ``sqs``, ``logs`` ...) to an endpoint URL that replaces the
    default one. ``instance_id`` is the on-premises identity; on EC2 leave it unset and IMDSv2 answers.
    ``max_attempts`` counts every try of one AWS call, the first included (botocore standard retry mode).
    """

    region: str | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    imds_endpoint: str = DEFAULT_IMDS_ENDPOINT
    imds_timeout: float = 1.0
    instance_id: str | None = None
    max_attempts: int = 5
    connect_timeout: float = 5
    read_timeout: float = 30


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The metadata service never redirects; following one would send the token elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Imds:
    """A small IMDSv2 client: ``PUT /latest/api/token`` then ``GET`` with the token header. Never IMDSv1.

    Every method returns ``None`` when the service does not answer usefully (on-premises, IMDS disabled, a
    container beyond the hop limit); ``last_error`` then says why. Requests never go through a proxy and use short
    timeouts, so an unreachable service costs at most about ``timeout`` seconds per call.
    """

    TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
    TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
    TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name, not a secret
    _MAX_BODY = 64 * 1024

    def __init__(self, endpoint: str = DEFAULT_IMDS_ENDPOINT, timeout: float = 1.0, *, token_ttl: int = 21600):
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigInvalid(f"the instance metadata endpoint must be an http:// or https:// URL, not {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.token_ttl = token_ttl
        self.last_error: str | None = None
        # An explicit empty ProxyHandler: HTTP_PROXY in the environment must not capture metadata requests.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        """One request; returns (status, body). Raises OSError for transport failures."""
        # The scheme was checked in __init__: only http(s) reaches urllib.
        req = urllib.request.Request(self.endpoint + path, method=method, headers=headers)  # noqa: S310
        if method == "PUT":
            req.data = b""
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return int(resp.status), resp.read(self._MAX_BODY).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), ""

    def token(self, *, refresh: bool = False) -> str | None:
        """Session token (cached until shortly before it expires), or ``None`` if IMDSv2 does not answer."""
        with self._lock:
            now = time.monotonic()
            if self._token is not None and not refresh and now < self._token_expires:
                return self._token
            self._token = None
            try:
                status, body = self._request("PUT", self.TOKEN_PATH, {self.TTL_HEADER: str(self.token_ttl)})
            except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed endpoint
                self.last_error = f"the instance metadata service at {self.endpoint} did not answer ({_why(exc)})"
                log.debug("imds token request failed: %s", self.last_error)
                return None
            if status != 200 or not body.strip():
                self.last_error = (
                    f"the instance metadata service at {self.endpoint} refused a session token (HTTP {status})"
                )
                log.debug("imds token request refused: %s", self.last_error)
                return None
            self._token = body.strip()
            # Renew a minute early so a token never expires between our check and the service's.
            self._token_expires = now + max(self.token_ttl - 60, 1)
            return self._token

    def get(self, path: str) -> str | None:
        """GET a metadata path such as ``/latest/meta-data/instance-id``; ``None`` if unavailable."""
        for attempt in range(2):
            token = self.token(refresh=attempt > 0)
            if token is None:
                return None
            try:
                status, body = self._request("GET", path, {self.TOKEN_HEADER: token})
            except (OSError, ValueError) as exc:
                self.last_error = f"the instance metadata service at {self.endpoint} did not answer ({_why(exc)})"
                return None
            if status == 200:
                return body.strip() or None
            if status != 401:  # 401: our token expired or was revoked; fetch a new one once
                break
        self.last_error = f"the instance metadata service at {self.endpoint} answered HTTP {status} for {path}"
        return None

    def instance_id(self) -> str | None:
        """This EC2 instance's id, or ``None`` off EC2."""
        return self.get("/latest/meta-data/instance-id")

    def region(self) -> str | None:
        """This EC2 instance's region, or ``None`` off EC2."""
        return self.get("/latest/meta-data/placement/region")


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__


class AwsContext:
    """Region, identity and boto3 clients for one agent process. Thread-safe; results are memoized.

    ``env`` is the environment consulted for the region (default: ``os.environ``). Credentials follow boto3's
    usual chain (environment, shared files, the instance role through IMDSv2).
    """

    def __init__(self, settings: AwsSettings, env: Mapping[str, str] | None = None, *, imds: Imds | None = None):
        self.settings = settings
        self._env = dict(os.environ if env is None else env)
        self.imds = imds if imds is not None else Imds(settings.imds_endpoint, settings.imds_timeout)
        self._lock = threading.RLock()
        self._region: str | None = None
        self._instance_id: str | None = None
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def region(self) -> str:
        """The AWS region; raises :class:`ConfigInvalid` saying how to set one if no source knows it."""
        with self._lock:
            if self._region is None:
                self._region = self._find_region()
            return self._region

    def _find_region(self) -> str:
        if self.settings.region:
            return self.settings.region
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            value = self._env.get(name, "").strip()
            if value:
                return value
        region = self.imds.region()
        if region:
            return region
        raise ConfigInvalid(
            "the AWS region is unknown: set aws.region in the agent configuration or AWS_REGION in the agent's "
            f"environment ({self.imds.last_error or 'the instance metadata service did not say'})"
        )

    def instance_id(self) -> str:
        """This host's identity: the configured one (on-premises), else the EC2 instance id from IMDSv2."""
        with self._lock:
            if self._instance_id is None:
                if self.settings.instance_id:
                    self._instance_id = self.settings.instance_id
                else:
                    found = self.imds.instance_id()
                    if not found:
                        raise ConfigInvalid(
                            "this host's instance id is unknown: on premises, set instance_id in the agent "
                            f"configuration ({self.imds.last_error or 'the instance metadata service did not say'})"
                        )
                    self._instance_id = found
            return self._instance_id

    def session(self) -> Any:
        """The one boto3 session of this context (created on first use)."""
        with self._lock:
            if self._session is None:
                import boto3.session
                import botocore.session

                core = botocore.session.get_session()
                # The instance-role credential lookup follows the same rules as berth's own Imds: IMDSv2 only, the
                # configured endpoint, the configured timeout.
                core.set_config_variable("ec2_metadata_v1_disabled", True)
                core.set_config_variable("metadata_service_timeout", self.settings.imds_timeout)
                if self.settings.imds_endpoint != DEFAULT_IMDS_ENDPOINT:
                    core.set_config_variable("ec2_metadata_service_endpoint", self.settings.imds_endpoint)
                self._session = boto3.session.Session(botocore_session=core, region_name=self.region())
            return self._session

    def client(self, service: str) -> Any:
        """A cached boto3 client for ``service`` with region, endpoint override, retries and timeouts applied."""
        with self._lock:
            cached = self._clients.get(service)
            if cached is not None:
                return cached
            from botocore.config import Config

            config = Config(
                region_name=self.region(),
                # total_max_attempts counts the first try, like AWS_MAX_ATTEMPTS; botocore's "max_attempts" key
                # would count retries only.
                retries={"mode": "standard", "total_max_attempts": self.settings.max_attempts},
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
                user_agent_extra=f"berth/{__version__}",
            )
            endpoint = self.settings.endpoints.get(service)
            # boto3's session is not thread-safe; clients are, once created. Hence creation under the lock.
            client = self.session().client(service, endpoint_url=endpoint, config=config)
            self._clients[service] = client
            log.debug("aws client created service=%s region=%s endpoint=%s", service, self.region(), endpoint)
            return client

    def client_factory(self, service: str) -> Callable[[], Any]:
        """A zero-argument callable returning :meth:`client` (what fetchers and backends take)."""
        return lambda: self.client(service)
