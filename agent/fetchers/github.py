"""Fetch a GitHub revision (SPEC §4): the tarball of owner/repo at a commit, streamed to disk.

``GET {api_base}/repos/{owner}/{repo}/tarball/{commit}``; GitHub answers with a redirect to a download host. An
optional token is sent as ``Authorization: Bearer`` to the API host only: it is dropped when a redirect leads to
another host, and it never appears in logs or error messages. Proxies come from the environment (``HTTPS_PROXY``,
``NO_PROXY``). Server errors, rate limiting (429) and timeouts are retried with exponential backoff.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import RevisionUnavailable
from agent.fetchers.base import FetchedBundle
from agent.model.revision import GitHubRevision, Revision

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
FREE_SPACE_MARGIN = 1024 * 1024
_MAX_RETRY_AFTER = 60.0


class _Retry(Exception):
    """A failure worth another attempt; ``delay`` is the server's Retry-After, if it gave one."""

    def __init__(self, why: str, delay: float | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.delay = delay


class _SameHostAuthRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send ``Authorization`` only to the scheme/host/port it was meant for."""

    def redirect_request(  # noqa: PLR0917 - the stdlib's signature
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old, nxt = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(new.full_url)
            if (old.scheme, old.netloc) != (nxt.scheme, nxt.netloc):
                new.remove_header("Authorization")
        return new


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class GitHubFetcher:
    """Downloads GitHub tarballs. ``api_base`` is ``https://HOST/api/v3`` for GitHub Enterprise Server.

    ``attempts`` counts every try (``4`` = one try and three retries); the n-th retry waits ``backoff * 2**(n-1)``
    seconds (or the server's Retry-After, capped at a minute). ``timeout`` bounds each connect and each read.
    """

    def __init__(
        self,
        *,
        api_base: str = "https://api.github.com",
        token: str | None = None,
        attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 30.0,
        free_space: Callable[[Path], int] | None = None,
    ) -> None:
        if not api_base.startswith(("https://", "http://")):
            raise ValueError(f"the GitHub API base must be an http(s) URL, not {api_base!r}")
        self.api_base = api_base.rstrip("/")
        self._token = token or None
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = timeout
        self._free_space = free_space or _disk_free
        # build_opener keeps the default ProxyHandler, which reads HTTP(S)_PROXY / NO_PROXY from the environment.
        self._opener = urllib.request.build_opener(_SameHostAuthRedirect())

    def __repr__(self) -> str:  # never show the token
        return f"GitHubFetcher(api_base={self.api_base!r}, token={'***' if self._token else None})"

    def tarball_url(self, revision: GitHubRevision) -> str:
        """The API URL fetched for ``revision`` (holds no secret; safe to log)."""
        owner, repo = revision.repository.split("/", 1)
        quote = urllib.parse.quote
        return f"{self.api_base}/repos/{quote(owner)}/{quote(repo)}/tarball/{quote(revision.commit, safe='/')}"

    def fetch(self, revision: Revision, workdir: Path) -> FetchedBundle:
        """Download the tarball of ``revision`` into ``workdir``.

        Raises :class:`RevisionUnavailable` for a missing repository or commit (404), refused credentials
        (401/403), a full disk, or when every attempt failed (server errors, timeouts).
        """
        if not isinstance(revision, GitHubRevision):
            raise TypeError(f"GitHubFetcher cannot fetch a {revision.kind} revision")
        url = self.tarball_url(revision)
        where = f"GitHub {revision.repository}@{revision.commit}"
        workdir.mkdir(parents=True, exist_ok=True)
        repo_name = revision.repository.split("/", 1)[1]
        target = workdir / f"{repo_name}-{revision.commit.replace('/', '_')}.tgz"
        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                size, sha256 = self._attempt(url, where, target, workdir)
            except _Retry as exc:
                last = exc.why
                log.warning("github tarball attempt %d/%d failed url=%s: %s", attempt, self.attempts, url, last)
                if attempt < self.attempts:
                    delay = self.backoff * 2 ** (attempt - 1)
                    time.sleep(max(delay, exc.delay or 0.0))
                continue
            log.info("github tarball fetched url=%s size=%d", url, size)
            return FetchedBundle(
                path=target,
                bundle_type=revision.bundle_type,
                env={"BUNDLE_COMMIT": revision.commit},
                details={
                    "repository": revision.repository,
                    "commit": revision.commit,
                    "url": url,
                    "sha256": sha256,
                    "size": size,
                },
            )
        raise RevisionUnavailable(self._scrub(f"{where}: no tarball after {self.attempts} attempts: {last}"))

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _attempt(self, url: str, where: str, target: Path, workdir: Path) -> tuple[int, str]:
        """One download try: returns (size, sha256); raises :class:`_Retry` or :class:`RevisionUnavailable`."""
        headers = {
            "Accept": "application/vnd.github+json",
            "User-Agent": "berth-agent",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked in __init__
        try:
            resp = self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                raise self._http_error(where, exc) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            raise _Retry(self._scrub(f"cannot reach {urllib.parse.urlsplit(url).netloc}: {_why(exc)}")) from None
        with resp:
            length_header = resp.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            free = self._free_space(workdir)
            if free < (length or 0) + FREE_SPACE_MARGIN:
                raise RevisionUnavailable(
                    f"{where}: the tarball is {length} bytes but {workdir} has only {free} bytes free: free some "
                    "space on that filesystem"
                )
            return self._stream(resp, length, where, target)

    def _stream(self, resp: Any, length: int | None, where: str, target: Path) -> tuple[int, str]:
        partial = target.with_name(target.name + ".part")
        sha = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
            if length is not None and size != length:
                raise _Retry(f"the tarball was cut short ({size} of {length} bytes)")
            partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise RevisionUnavailable(f"{where}: the disk filled up while downloading; free some space") from None
            raise _Retry(f"download interrupted: {_why(exc)}") from None
        except http.client.HTTPException as exc:
            partial.unlink(missing_ok=True)
            raise _Retry(f"download interrupted: {type(exc).__name__}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size, sha.hexdigest()

    def _http_error(self, where: str, exc: urllib.error.HTTPError) -> BaseException:
        code = exc.code
        if code == 404:
            return RevisionUnavailable(
                f"{where}: repository or commit not found, or the token cannot see it (HTTP 404); check the "
                "repository name, the commit id, and that the token has read access to the repository"
            )
        if code == 401:
            return RevisionUnavailable(
                f"{where}: GitHub refused the credentials (HTTP 401): "
                + ("the token is invalid or expired; configure a valid one" if self._token
                   else "this repository needs a token; configure one")
            )
        if code == 403 and exc.headers.get("X-RateLimit-Remaining") == "0":
            return RevisionUnavailable(
                f"{where}: GitHub API rate limit exceeded (HTTP 403); configure a token for a higher limit, "
                "or retry after the limit resets"
            )
        if code == 403:
            return RevisionUnavailable(
                f"{where}: GitHub denied access (HTTP 403); check that the token may read the repository's contents"
            )
        if code == 429 or code >= 500:
            return _Retry(f"GitHub answered HTTP {code}", _retry_after(exc.headers.get("Retry-After")))
        return RevisionUnavailable(f"{where}: GitHub answered HTTP {code} {exc.reason}")


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(float(value.strip()), _MAX_RETRY_AFTER)
    return None


def _why(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__
