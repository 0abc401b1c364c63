"""IMDSv2 client against a local server that demands the token, and against nothing at all (on premises)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from agent.aws import AwsContext, AwsSettings, Imds
from agent.errors import ConfigInvalid
from tests.fakes.http import FakeImds, ForwardingProxy, Reply, Seen, closed_port, serving
from tests.fakes.moto_server import moto_server, use_dummy_credentials

pytestmark = pytest.mark.integration


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    with FakeImds(instance_id="i-0fedcba9876543210", region="eu-north-1") as fake:
        yield fake


def test_fake_service_demands_a_token(imds: FakeImds) -> None:
    # What the client is tested against: an IMDSv1-style GET is refused.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(imds.url + "/latest/meta-data/instance-id", timeout=5)
    assert err.value.code == 401


def test_identity_and_region_with_the_token_flow(imds: FakeImds) -> None:
    client = Imds(imds.url, timeout=2)
    assert client.instance_id() == "i-0fedcba9876543210"
    assert client.region() == "eu-north-1"
    puts = [r for r in imds.server.seen if r.method == "PUT"]
    gets = [r for r in imds.server.seen if r.method == "GET"]
    assert len(puts) == 1  # the token is reused
    assert puts[0].path == "/latest/api/token"
    assert int(puts[0].headers["x-aws-ec2-metadata-token-ttl-seconds"]) > 0
    assert len(gets) == 2
    assert all(g.headers.get("x-aws-ec2-metadata-token") == "token-1" for g in gets)


def test_expired_token_is_renewed_once(imds: FakeImds) -> None:
    client = Imds(imds.url, timeout=2)
    assert client.instance_id() == "i-0fedcba9876543210"
    imds.revoke()
    assert client.region() == "eu-north-1"
    assert [r.method for r in imds.server.seen] == ["PUT", "GET", "GET", "PUT", "GET"]


def test_context_takes_region_and_identity_from_imds(imds: FakeImds) -> None:
    ctx = AwsContext(AwsSettings(imds_endpoint=imds.url, imds_timeout=2), env={})
    assert ctx.region() == "eu-north-1"
    assert ctx.instance_id() == "i-0fedcba9876543210"


def test_metadata_requests_never_go_through_a_proxy(imds: FakeImds, monkeypatch: pytest.MonkeyPatch) -> None:
    with ForwardingProxy() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert Imds(imds.url, timeout=2).instance_id() == "i-0fedcba9876543210"
    assert proxy.urls == []


def test_no_imdsv1_fallback_when_tokens_are_not_served() -> None:
    # An old or IMDSv1-only service answers 404 to the token request: berth gives up rather than GET without one.
    def route(req: Seen) -> Reply:
        return Reply(404) if req.method == "PUT" else Reply(200, b"i-imdsv1")

    with serving(route) as server:
        client = Imds(server.url, timeout=2)
        assert client.instance_id() is None
        assert "HTTP 404" in (client.last_error or "")
    assert [r.method for r in server.seen] == ["PUT"]


def test_on_premises_unreachable_service_answers_none() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    client = Imds(endpoint, timeout=0.5)
    assert client.token() is None
    assert client.instance_id() is None
    assert client.region() is None
    assert endpoint in (client.last_error or "")


def test_on_premises_context_errors_say_what_to_configure() -> None:
    settings = AwsSettings(imds_endpoint=f"http://127.0.0.1:{closed_port()}", imds_timeout=0.5)
    ctx = AwsContext(settings, env={})
    with pytest.raises(ConfigInvalid, match="instance_id"):
        ctx.instance_id()
    with pytest.raises(ConfigInvalid, match=r"aws\.region"):
        ctx.region()
    configured = AwsContext(
        AwsSettings(region="us-east-2", instance_id="mi-0123", imds_endpoint=settings.imds_endpoint), env={}
    )
    assert (configured.region(), configured.instance_id()) == ("us-east-2", "mi-0123")


def test_silent_service_times_out_to_none() -> None:
    # A host where 169.254.169.254 swallows packets (e.g. a container beyond the hop limit) must not hang the agent.
    with serving(lambda req: Reply(200, b"late", delay=3.0)) as server:
        client = Imds(server.url, timeout=0.3)
        assert client.instance_id() is None
        assert "did not answer" in (client.last_error or "")


def test_instance_role_credentials_come_through_imdsv2(imds: FakeImds, monkeypatch: pytest.MonkeyPatch) -> None:
    use_dummy_credentials(monkeypatch)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name)
    with moto_server() as moto:
        ctx = AwsContext(AwsSettings(imds_endpoint=imds.url, imds_timeout=2, endpoints=moto.endpoints("sts")), env={})
        identity = ctx.client("sts").get_caller_identity()
    assert identity["Account"]
    credentials_reads = [r for r in imds.server.seen if "security-credentials" in r.path]
    assert credentials_reads, "boto3 did not ask the metadata service for the instance role"
    assert all(r.headers.get("x-aws-ec2-metadata-token", "").startswith("token-") for r in imds.server.seen
               if r.method == "GET")


def test_instance_role_is_never_read_with_imdsv1(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import MetadataRetrievalError, NoCredentialsError

    use_dummy_credentials(monkeypatch)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name)
    v2 = FakeImds()

    def v1_only(req: Seen) -> Reply:  # serves the role to anyone, but issues no tokens
        if req.method == "PUT":
            return Reply(403)
        return Reply(200, v2.metadata.get(req.path, "").encode())

    with serving(v1_only) as server:
        ctx = AwsContext(AwsSettings(region="us-east-1", imds_endpoint=server.url, imds_timeout=1), env={})
        with pytest.raises((NoCredentialsError, MetadataRetrievalError)):
            ctx.client("sts").get_caller_identity()
    assert [r.method for r in server.seen if r.method == "GET"] == []
