"""AwsSettings/AwsContext: region and identity sources in order, client configuration, laziness."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from agent.aws import AwsContext, AwsSettings, Imds
from agent.errors import ConfigInvalid
from tests.conftest import REPO
from tests.fakes.http import closed_port
from tests.fakes.moto_server import use_dummy_credentials


class CountingImds(Imds):
    """An Imds whose answers are given, counting how often it is asked (no network)."""

    def __init__(self, region: str | None = None, instance_id: str | None = None) -> None:
        super().__init__(f"http://127.0.0.1:{closed_port()}")
        self._answers = {"region": region, "instance_id": instance_id}
        self.asked: list[str] = []

    def region(self) -> str | None:
        self.asked.append("region")
        return self._answers["region"]

    def instance_id(self) -> str | None:
        self.asked.append("instance_id")
        return self._answers["instance_id"]


def test_settings_defaults_are_independent() -> None:
    a, b = AwsSettings(), AwsSettings()
    assert a.endpoints == {} and a.endpoints is not b.endpoints
    assert a.imds_endpoint == "http://169.254.169.254"
    assert (a.max_attempts, a.connect_timeout, a.read_timeout, a.imds_timeout) == (5, 5, 30, 1.0)


def test_region_from_config_wins_over_environment_and_imds() -> None:
    imds = CountingImds(region="ap-south-1")
    ctx = AwsContext(AwsSettings(region="eu-central-1"), env={"AWS_REGION": "us-west-2"}, imds=imds)
    assert ctx.region() == "eu-central-1"
    assert imds.asked == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-2"}, "us-west-2"),
        ({"AWS_DEFAULT_REGION": "us-east-2"}, "us-east-2"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-2"}, "us-east-2"),
    ],
)
def test_region_from_environment_before_imds(env: dict[str, str], expected: str) -> None:
    imds = CountingImds(region="ap-south-1")
    assert AwsContext(AwsSettings(), env=env, imds=imds).region() == expected
    assert imds.asked == []


def test_region_from_imds_last_and_memoized() -> None:
    imds = CountingImds(region="ap-south-1")
    ctx = AwsContext(AwsSettings(), env={}, imds=imds)
    assert ctx.region() == "ap-south-1"
    assert ctx.region() == "ap-south-1"
    assert imds.asked == ["region"]


def test_no_region_anywhere_says_how_to_set_one() -> None:
    settings = AwsSettings(imds_endpoint=f"http://127.0.0.1:{closed_port()}", imds_timeout=0.5)
    with pytest.raises(ConfigInvalid) as err:
        AwsContext(settings, env={}).region()
    assert "aws.region" in str(err.value)
    assert "AWS_REGION" in str(err.value)
    assert "metadata" in str(err.value)


def test_instance_id_from_config_never_asks_imds() -> None:
    imds = CountingImds(instance_id="i-fromimds")
    ctx = AwsContext(AwsSettings(instance_id="mi-onprem-1"), env={}, imds=imds)
    assert ctx.instance_id() == "mi-onprem-1"
    assert imds.asked == []


def test_instance_id_from_imds_memoized() -> None:
    imds = CountingImds(instance_id="i-0abc")
    ctx = AwsContext(AwsSettings(), env={}, imds=imds)
    assert ctx.instance_id() == "i-0abc"
    assert ctx.instance_id() == "i-0abc"
    assert imds.asked == ["instance_id"]


def test_on_premises_without_configured_identity_is_a_clear_error() -> None:
    ctx = AwsContext(AwsSettings(), env={}, imds=CountingImds())
    with pytest.raises(ConfigInvalid, match="instance_id in the agent configuration"):
        ctx.instance_id()


def test_imds_endpoint_must_be_http() -> None:
    with pytest.raises(ConfigInvalid, match="http"):
        Imds("file:///etc/passwd")


def test_client_has_region_endpoint_standard_retries_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    use_dummy_credentials(monkeypatch)
    settings = AwsSettings(
        region="eu-west-1",
        endpoints={"s3": "http://127.0.0.1:9"},
        max_attempts=7,
        connect_timeout=2,
        read_timeout=11,
    )
    ctx = AwsContext(settings, env={})
    s3 = ctx.client("s3")
    sqs = ctx.client("sqs")
    assert s3.meta.region_name == "eu-west-1"
    assert s3.meta.endpoint_url == "http://127.0.0.1:9"
    assert sqs.meta.endpoint_url.startswith("https://") and "eu-west-1" in sqs.meta.endpoint_url
    config: Any = s3.meta.config
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == 7  # every try counted, like AWS_MAX_ATTEMPTS
    assert (config.connect_timeout, config.read_timeout) == (2, 11)
    assert config.proxies is None  # proxies stay botocore's business: HTTPS_PROXY / NO_PROXY from the environment


def test_clients_are_cached_and_created_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    use_dummy_credentials(monkeypatch)
    ctx = AwsContext(AwsSettings(region="us-east-1"), env={})
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(ctx.client("s3"))) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 12
    assert all(c is got[0] for c in got)
    assert ctx.client_factory("s3")() is got[0]
    assert ctx.client("sqs") is not got[0]


def test_importing_aws_and_fetchers_does_not_import_boto3() -> None:
    code = (
        "import sys, agent.aws, agent.fetchers.s3, agent.fetchers.github; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
