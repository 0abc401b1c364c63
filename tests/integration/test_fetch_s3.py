"""S3 revisions against a moto server over real HTTP, with clients made by AwsContext."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.aws import AwsContext, AwsSettings
from agent.errors import ChecksumMismatch, RevisionUnavailable
from agent.fetchers.s3 import S3Fetcher
from agent.model.revision import S3Revision
from tests.fakes.http import ForwardingProxy, closed_port
from tests.fakes.moto_server import MotoServer, moto_server, moto_server_process, use_dummy_credentials

pytestmark = pytest.mark.integration

BUCKET = "berth-revisions"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> AwsContext:
    use_dummy_credentials(monkeypatch)
    moto.reset()
    ctx = AwsContext(AwsSettings(region="us-east-1", endpoints=moto.endpoints("s3")))
    s3 = ctx.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return ctx


def _gets(client: Any) -> list[dict[str, Any]]:
    """Record the GetObject calls a client makes (botocore's event API; the HTTP traffic stays real)."""
    calls: list[dict[str, Any]] = []
    client.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **kw: calls.append(dict(params)))
    return calls


def test_fetches_the_named_version_with_hook_variables(aws: AwsContext, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    old = s3.put_object(Bucket=BUCKET, Key="app/bundle.tgz", Body=b"version one")
    s3.put_object(Bucket=BUCKET, Key="app/bundle.tgz", Body=b"version two, newer")
    revision = S3Revision(bucket=BUCKET, key="app/bundle.tgz", bundle_type="tgz", version=old["VersionId"])

    bundle = S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path / "dl")

    assert bundle.path.read_bytes() == b"version one"
    assert bundle.path.parent == tmp_path / "dl"
    assert bundle.bundle_type == "tgz"
    etag = old["ETag"].strip('"')
    assert dict(bundle.env) == {
        "BUNDLE_BUCKET": BUCKET,
        "BUNDLE_KEY": "app/bundle.tgz",
        "BUNDLE_VERSION": old["VersionId"],
        "BUNDLE_ETAG": etag,
    }
    assert bundle.details["version"] == old["VersionId"]
    assert bundle.details["sha256"] == hashlib.sha256(b"version one").hexdigest()
    assert bundle.details["size"] == len(b"version one")


def test_latest_object_with_matching_quoted_etag_and_sha256(aws: AwsContext, tmp_path: Path) -> None:
    body = os.urandom(100_000)
    put = aws.client("s3").put_object(Bucket=BUCKET, Key="b.zip", Body=body)
    revision = S3Revision(
        bucket=BUCKET, key="b.zip", bundle_type="zip", etag=put["ETag"], sha256=hashlib.sha256(body).hexdigest()
    )
    bundle = S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path)
    assert bundle.path.read_bytes() == body
    assert bundle.env["BUNDLE_VERSION"] == put["VersionId"]


def test_wrong_etag_is_a_checksum_mismatch_before_download(aws: AwsContext, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="b.tgz", Body=b"payload")
    gets = _gets(s3)
    revision = S3Revision(bucket=BUCKET, key="b.tgz", bundle_type="tgz", etag='"0123456789abcdef0123456789abcdef"')
    with pytest.raises(ChecksumMismatch, match="ETag"):
        S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path / "dl")
    assert gets == []
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


def test_wrong_sha256_is_a_checksum_mismatch_and_leaves_nothing(aws: AwsContext, tmp_path: Path) -> None:
    aws.client("s3").put_object(Bucket=BUCKET, Key="b.tgz", Body=b"payload")
    revision = S3Revision(bucket=BUCKET, key="b.tgz", bundle_type="tgz", sha256="0" * 64)
    with pytest.raises(ChecksumMismatch, match="sha256"):
        S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_object_says_so(aws: AwsContext, tmp_path: Path) -> None:
    revision = S3Revision(bucket=BUCKET, key="nope.tgz", bundle_type="tgz")
    with pytest.raises(RevisionUnavailable) as err:
        S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path)
    assert "s3://berth-revisions/nope.tgz" in str(err.value)
    assert "no such object" in str(err.value)


def test_missing_version_says_so(aws: AwsContext, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="b.tgz", Body=b"payload")
    revision = S3Revision(bucket=BUCKET, key="b.tgz", bundle_type="tgz", version="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    with pytest.raises(RevisionUnavailable, match="version"):
        S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path)


def test_missing_bucket_says_so(aws: AwsContext, tmp_path: Path) -> None:
    revision = S3Revision(bucket="no-such-bucket-here", key="b.tgz", bundle_type="tgz")
    with pytest.raises(RevisionUnavailable) as err:
        S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path)
    assert "bucket 'no-such-bucket-here' does not exist" in str(err.value)


def test_directory_bundle_type_is_refused(aws: AwsContext, tmp_path: Path) -> None:
    revision = S3Revision(bucket=BUCKET, key="b", bundle_type="directory")
    with pytest.raises(RevisionUnavailable, match="tar, tgz or zip"):
        S3Fetcher(aws.client_factory("s3")).fetch(revision, tmp_path)


def test_too_little_free_space_is_refused_before_downloading(aws: AwsContext, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="big.tgz", Body=b"x" * 300_000)
    gets = _gets(s3)
    probed: list[Path] = []

    def free_space(path: Path) -> int:
        probed.append(path)
        return 200_000

    with pytest.raises(RevisionUnavailable) as err:
        S3Fetcher(aws.client_factory("s3"), free_space=free_space).fetch(
            S3Revision(bucket=BUCKET, key="big.tgz", bundle_type="tgz"), tmp_path / "dl"
        )
    assert "300000 bytes" in str(err.value) and "200000 bytes free" in str(err.value)
    assert probed == [tmp_path / "dl"]
    assert gets == []
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_revision_larger_than_a_real_filesystem_is_refused(
    aws: AwsContext, tmp_path: Path, tiny_fs: Path
) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="big.tgz", Body=os.urandom(3 * MiB))
    gets = _gets(s3)
    with pytest.raises(RevisionUnavailable, match="bytes free"):
        S3Fetcher(aws.client_factory("s3")).fetch(S3Revision(bucket=BUCKET, key="big.tgz", bundle_type="tgz"), tiny_fs)
    assert gets == []
    assert list(tiny_fs.iterdir()) == []


def test_multipart_object_arrives_intact(aws: AwsContext, tmp_path: Path) -> None:
    from boto3.s3.transfer import TransferConfig
    from s3transfer.futures import TransferMeta

    body = os.urandom(20 * MiB + 123)
    source = tmp_path / "source.tgz"
    source.write_bytes(body)
    s3 = aws.client("s3")
    s3.upload_file(str(source), BUCKET, "multi.tgz", Config=TransferConfig(multipart_threshold=5 * MiB))
    etag = s3.head_object(Bucket=BUCKET, Key="multi.tgz")["ETag"]
    assert "-" in etag  # really a multipart ETag, which is not an MD5 of the content
    gets = _gets(s3)

    bundle = S3Fetcher(aws.client_factory("s3")).fetch(
        S3Revision(bucket=BUCKET, key="multi.tgz", bundle_type="tgz", etag=etag), tmp_path / "dl"
    )
    assert bundle.details["sha256"] == hashlib.sha256(body).hexdigest()
    assert bundle.path.read_bytes() == body
    assert len(gets) >= 3  # ranged GETs, each pinned to what HEAD saw
    assert all(g.get("VersionId") == bundle.details["version"] for g in gets)
    if hasattr(TransferMeta, "provide_object_etag"):  # s3transfer >= 0.11 also sends If-Match
        assert all(g.get("IfMatch") == etag for g in gets)


def test_client_calls_go_through_the_environment_proxy(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_dummy_credentials(monkeypatch)
    moto.reset()
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        ctx = AwsContext(AwsSettings(region="us-east-1", endpoints=moto.endpoints("s3")))
        s3 = ctx.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="p.tgz", Body=b"through the proxy")
        bundle = S3Fetcher(ctx.client_factory("s3")).fetch(S3Revision(bucket=BUCKET, key="p.tgz", bundle_type="tgz"),
                                                           tmp_path)
        assert bundle.path.read_bytes() == b"through the proxy"
        seen = list(proxy.urls)
        assert any(u.startswith(moto.url) and "p.tgz" in u for u in seen)

        # NO_PROXY wins for the hosts it names.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = AwsContext(AwsSettings(region="us-east-1", endpoints=moto.endpoints("s3")))
        direct.client("s3").head_object(Bucket=BUCKET, Key="p.tgz")
        assert proxy.urls == seen


def test_peak_memory_does_not_grow_with_the_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # moto runs in its own process here, so this process's allocations are the fetcher's alone.
    use_dummy_credentials(monkeypatch)
    size = 64 * MiB
    with moto_server_process() as server:
        ctx = AwsContext(AwsSettings(region="us-east-1", endpoints=server.endpoints("s3")))
        s3 = ctx.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        source = tmp_path / "big.bin"
        with source.open("wb") as fh:
            for _ in range(size // MiB):
                fh.write(os.urandom(MiB))
        s3.upload_file(str(source), BUCKET, "big.tgz")
        s3.put_object(Bucket=BUCKET, Key="small.tgz", Body=b"warm up")
        fetcher = S3Fetcher(ctx.client_factory("s3"))
        fetcher.fetch(S3Revision(bucket=BUCKET, key="small.tgz", bundle_type="tgz"), tmp_path / "warm")

        tracemalloc.start()
        try:
            bundle = fetcher.fetch(S3Revision(bucket=BUCKET, key="big.tgz", bundle_type="tgz"), tmp_path / "dl")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert bundle.details["size"] == size
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB while fetching a {size // MiB} MiB object"


def test_unreachable_s3_is_revision_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_dummy_credentials(monkeypatch)
    settings = AwsSettings(region="us-east-1", endpoints={"s3": f"http://127.0.0.1:{closed_port()}"}, max_attempts=1)
    ctx = AwsContext(settings)
    with pytest.raises(RevisionUnavailable, match=r"s3://berth-revisions/b\.tgz"):
        S3Fetcher(ctx.client_factory("s3")).fetch(S3Revision(bucket=BUCKET, key="b.tgz", bundle_type="tgz"), tmp_path)


def test_missing_credentials_are_named(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_dummy_credentials(monkeypatch)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ctx = AwsContext(AwsSettings(region="us-east-1", endpoints=moto.endpoints("s3")))
    with pytest.raises(RevisionUnavailable, match="credentials"):
        S3Fetcher(ctx.client_factory("s3")).fetch(S3Revision(bucket=BUCKET, key="b.tgz", bundle_type="tgz"), tmp_path)
