"""GitHub revisions against local HTTP servers: tarball, redirect, 404, 401, rate limit, slow and failing servers."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from pathlib import Path

import pytest

from agent.errors import RevisionUnavailable
from agent.fetchers.github import GitHubFetcher
from agent.model.revision import GitHubRevision
from tests.fakes.http import ForwardingProxy, Reply, Seen, serving

pytestmark = pytest.mark.integration

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "ghp_secretTOKENvalue123"
REVISION = GitHubRevision(repository="acme/webapp", commit=COMMIT)
TARBALL_PATH = f"/repos/acme/webapp/tarball/{COMMIT}"


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"version: 0.0\nos: linux\n"
        info = tarfile.TarInfo(f"acme-webapp-{COMMIT[:7]}/appspec.yml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TARBALL = _tarball()


def _fetcher(api_base: str, **kwargs: object) -> GitHubFetcher:
    options: dict[str, object] = {"token": TOKEN, "attempts": 3, "backoff": 0.01, "timeout": 5.0}
    options.update(kwargs)
    return GitHubFetcher(api_base=api_base, **options)  # type: ignore[arg-type]


def test_tarball_is_streamed_to_disk_with_the_token(tmp_path: Path) -> None:
    with serving(lambda req: Reply(200, TARBALL) if req.path == TARBALL_PATH else Reply(404)) as api:
        bundle = _fetcher(api.url).fetch(REVISION, tmp_path)
    assert bundle.path == tmp_path / f"webapp-{COMMIT}.tgz"
    assert bundle.path.read_bytes() == TARBALL
    assert bundle.bundle_type == "tgz"
    assert dict(bundle.env) == {"BUNDLE_COMMIT": COMMIT}
    assert bundle.details["sha256"] == hashlib.sha256(TARBALL).hexdigest()
    (request,) = api.seen
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    with tarfile.open(bundle.path) as tar:
        assert tar.getnames() == [f"acme-webapp-{COMMIT[:7]}/appspec.yml"]


def test_enterprise_api_base_and_no_token(tmp_path: Path) -> None:
    with serving(lambda req: Reply(200, TARBALL)) as ghe:
        bundle = _fetcher(ghe.url + "/api/v3", token=None).fetch(REVISION, tmp_path)
    assert bundle.path.read_bytes() == TARBALL
    (request,) = ghe.seen
    assert request.path == "/api/v3" + TARBALL_PATH
    assert "authorization" not in request.headers


def test_redirect_to_another_host_drops_the_token(tmp_path: Path) -> None:
    with serving(lambda req: Reply(200, TARBALL)) as codeload:
        location = f"{codeload.url}/acme/webapp/legacy.tar.gz/{COMMIT}?token=short-lived"
        with serving(lambda req: Reply(302, headers={"Location": location})) as api:
            bundle = _fetcher(api.url).fetch(REVISION, tmp_path)
    assert bundle.path.read_bytes() == TARBALL
    assert api.seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    (download,) = codeload.seen
    assert download.path.startswith("/acme/webapp/legacy.tar.gz/")
    assert "authorization" not in download.headers


def test_redirect_on_the_same_host_keeps_the_token(tmp_path: Path) -> None:
    def route(req: Seen) -> Reply:
        if req.path == TARBALL_PATH:
            return Reply(302, headers={"Location": f"/_codeload/acme/webapp/legacy.tar.gz/{COMMIT}"})
        return Reply(200, TARBALL)

    with serving(route) as ghe:
        _fetcher(ghe.url).fetch(REVISION, tmp_path)
    assert [r.headers.get("authorization") for r in ghe.seen] == [f"Bearer {TOKEN}"] * 2


def test_not_found_is_not_retried_and_hides_the_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    not_found = Reply(404, b'{"message": "Not Found"}')
    with serving(lambda req: not_found) as api, pytest.raises(RevisionUnavailable) as err:
        _fetcher(api.url).fetch(REVISION, tmp_path)
    assert "repository or commit not found, or the token cannot see it" in str(err.value)
    assert "acme/webapp" in str(err.value)
    assert len(api.seen) == 1
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_bad_credentials_name_the_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    refused = Reply(401, b'{"message": "Bad credentials"}')
    with serving(lambda req: refused) as api, pytest.raises(RevisionUnavailable) as err:
        _fetcher(api.url).fetch(REVISION, tmp_path)
    assert "401" in str(err.value) and "token" in str(err.value)
    assert len(api.seen) == 1
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text
    assert TOKEN not in repr(_fetcher(api.url))


def test_rate_limit_is_explained(tmp_path: Path) -> None:
    limited = Reply(403, headers={"X-RateLimit-Remaining": "0"})
    with serving(lambda req: limited) as api, pytest.raises(RevisionUnavailable, match="rate limit"):
        _fetcher(api.url, token=None).fetch(REVISION, tmp_path)


def test_slow_response_is_retried_then_fetched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def route(req: Seen) -> Reply:
        # the first answer comes long after the client's timeout; the second at once
        return Reply(200, TARBALL, delay=3.0) if len(api.seen) == 1 else Reply(200, TARBALL)

    with serving(route) as api:
        bundle = _fetcher(api.url, timeout=0.5).fetch(REVISION, tmp_path)
    assert bundle.path.read_bytes() == TARBALL
    assert len(api.seen) == 2
    assert TOKEN not in caplog.text


def test_server_errors_are_retried_up_to_attempts(tmp_path: Path) -> None:
    with serving(lambda req: Reply(502, b"bad gateway")) as api, pytest.raises(RevisionUnavailable) as err:
        _fetcher(api.url, attempts=3).fetch(REVISION, tmp_path)
    assert len(api.seen) == 3
    assert "3 attempts" in str(err.value) and "HTTP 502" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_transient_error_then_success(tmp_path: Path) -> None:
    def route(req: Seen) -> Reply:
        return Reply(503, headers={"Retry-After": "0"}) if len(api.seen) == 1 else Reply(200, TARBALL)

    with serving(route) as api:
        bundle = _fetcher(api.url).fetch(REVISION, tmp_path)
    assert bundle.path.read_bytes() == TARBALL
    assert len(api.seen) == 2


def test_too_little_free_space_for_the_announced_size(tmp_path: Path) -> None:
    with serving(lambda req: Reply(200, TARBALL)) as api, pytest.raises(RevisionUnavailable, match="bytes free"):
        _fetcher(api.url, free_space=lambda path: 10).fetch(REVISION, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_proxy_from_the_environment_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with serving(lambda req: Reply(200, TARBALL)) as api, ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        bundle = _fetcher(api.url).fetch(REVISION, tmp_path)
    assert bundle.path.read_bytes() == TARBALL
    assert proxy.urls == [api.url + TARBALL_PATH]
