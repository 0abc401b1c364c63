"""Fetch an S3 revision (SPEC §4): HEAD, free-space check, managed streaming download, ETag/sha256 checks.

The object is streamed to disk by s3transfer's managed download (ranged GETs pinned to the object's ETag with
``If-Match``, bounded threads and I/O queue), so memory does not grow with the object. A mismatching ETag or sha256
raises :class:`ChecksumMismatch` and removes the download before anything is unpacked.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import ChecksumMismatch, RevisionUnavailable
from agent.fetchers.base import FetchedBundle
from agent.model.revision import Revision, S3Revision

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Slack left on the filesystem beyond the object itself (s3transfer writes a temporary file, then renames it).
FREE_SPACE_MARGIN = 1 * MiB
_HASH_CHUNK = 1 * MiB
_EXTENSIONS = {"tar": "tar", "tgz": "tgz", "zip": "zip"}


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def normalise_etag(etag: str) -> str:
    """ETags compare without surrounding quotes, whitespace or case (``"abc"`` == ``abc``)."""
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip().strip('"').lower()


class S3Fetcher:
    """Downloads S3 revisions into a work folder.

    ``client_factory`` returns a boto3 S3 client (usually ``AwsContext.client_factory("s3")``); it is called once per
    fetch, so the client is created only when an S3 revision is actually fetched. ``free_space`` returns the free
    bytes of the filesystem holding a path (default: :func:`shutil.disk_usage`); tests inject their own.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        free_space: Callable[[Path], int] | None = None,
        max_concurrency: int = 4,
    ) -> None:
        self._client_factory = client_factory
        self._free_space = free_space or _disk_free
        self._max_concurrency = max_concurrency

    def fetch(self, revision: Revision, workdir: Path) -> FetchedBundle:
        """Download ``revision`` into ``workdir`` and verify it.

        Raises :class:`RevisionUnavailable` (missing bucket/object/version, access denied, no free space, S3
        unreachable) or :class:`ChecksumMismatch` (ETag or sha256 differ; the download is removed).
        """
        if not isinstance(revision, S3Revision):
            raise TypeError(f"S3Fetcher cannot fetch a {revision.kind} revision")
        where = _describe(revision)
        ext = _EXTENSIONS.get(revision.bundle_type)
        if ext is None:
            raise RevisionUnavailable(
                f"{where}: bundle_type {revision.bundle_type!r} cannot come from S3: an S3 revision is an archive, "
                "use tar, tgz or zip"
            )
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client_factory()
        head_args: dict[str, str] = {"Bucket": revision.bucket, "Key": revision.key}
        if revision.version:
            head_args["VersionId"] = revision.version
        try:
            head = client.head_object(**head_args)
        except ClientError as exc:
            raise _head_error(client, revision, exc) from exc
        except BotoCoreError as exc:
            raise RevisionUnavailable(f"{where}: the S3 request failed: {exc}") from exc

        raw_etag = str(head.get("ETag") or "")
        etag = normalise_etag(raw_etag)
        size = int(head.get("ContentLength") or 0)
        version = head.get("VersionId") or revision.version
        if version == "null":  # what S3 reports for an object of an unversioned bucket
            version = None
        if revision.etag is not None and normalise_etag(revision.etag) != etag:
            raise ChecksumMismatch(
                f"{where}: the object's ETag is {etag}, the revision names {normalise_etag(revision.etag)}: "
                "the object was replaced; deploy the current ETag or name the version id of the one you meant"
            )

        workdir.mkdir(parents=True, exist_ok=True)
        free = self._free_space(workdir)
        if free < size + FREE_SPACE_MARGIN:
            raise RevisionUnavailable(
                f"{where} is {size} bytes but {workdir} has only {free} bytes free: free some space on that "
                "filesystem (or move the agent's state root to a larger one)"
            )

        target = workdir / f"bundle.{ext}"
        log.info(
            "downloading s3 revision bucket=%s key=%s version=%s size=%d", revision.bucket, revision.key, version, size
        )
        from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError

        try:
            self._download(client, revision, version=version, etag=raw_etag, size=size, target=target)
        except ClientError as exc:
            raise _head_error(client, revision, exc) from exc
        except (BotoCoreError, OSError, RetriesExceededError, S3DownloadFailedError) as exc:
            raise RevisionUnavailable(f"{where}: download failed: {_download_why(exc)}") from exc

        sha256, md5 = _hash_file(target, want_md5=_etag_is_md5(raw_etag, head))
        problem = None
        if md5 is not None and md5 != etag:
            problem = f"the downloaded bytes have MD5 {md5} but the object's ETag is {etag}: the download is corrupt"
        elif revision.sha256 is not None and sha256 != revision.sha256.lower():
            problem = (
                f"the downloaded bytes have sha256 {sha256}, the revision names {revision.sha256}: the object is not "
                "the one the revision describes"
            )
        if problem is not None:
            target.unlink(missing_ok=True)
            raise ChecksumMismatch(f"{where}: {problem}")

        env = {
            "BUNDLE_BUCKET": revision.bucket,
            "BUNDLE_KEY": revision.key,
            "BUNDLE_VERSION": version or "",
            "BUNDLE_ETAG": etag,
        }
        details = {
            "bucket": revision.bucket,
            "key": revision.key,
            "version": version,
            "etag": etag,
            "sha256": sha256,
            "size": size,
        }
        return FetchedBundle(path=target, bundle_type=revision.bundle_type, env=env, details=details)

    def _download(
        self, client: Any, revision: S3Revision, *, version: str | None, etag: str, size: int, target: Path
    ) -> None:
        from s3transfer.manager import TransferConfig, TransferManager
        from s3transfer.subscribers import BaseSubscriber

        class _Known(BaseSubscriber):
            """Hands s3transfer what HEAD already told us: no second HEAD, and every GET pinned by If-Match."""

            def on_queued(self, future: Any, **kwargs: Any) -> None:
                future.meta.provide_transfer_size(size)
                if etag and hasattr(future.meta, "provide_object_etag"):  # s3transfer >= 0.11
                    future.meta.provide_object_etag(etag)

        # Bounded threads and I/O queue: at most about max_io_queue_size * io_chunksize bytes wait in memory.
        config = TransferConfig(
            multipart_threshold=8 * MiB,
            multipart_chunksize=8 * MiB,
            max_request_concurrency=self._max_concurrency,
            max_io_queue_size=16,
            io_chunksize=256 * 1024,
            num_download_attempts=5,
        )
        extra_args = {"VersionId": version} if version else {}
        with TransferManager(client, config) as manager:
            future = manager.download(
                revision.bucket, revision.key, str(target), extra_args=extra_args, subscribers=[_Known()]
            )
            future.result()


def _describe(revision: S3Revision) -> str:
    where = f"s3://{revision.bucket}/{revision.key}"
    return f"{where} (version {revision.version})" if revision.version else where


def _etag_is_md5(raw_etag: str, head: dict[str, Any]) -> bool:
    """A single-part upload stored without KMS or customer keys has the content's MD5 as its ETag."""
    etag = normalise_etag(raw_etag)
    if len(etag) != 32 or any(c not in "0123456789abcdef" for c in etag):
        return False  # multipart ("...-N") or something else
    return head.get("ServerSideEncryption") in (None, "AES256") and not head.get("SSECustomerAlgorithm")


def _hash_file(path: Path, *, want_md5: bool) -> tuple[str, str | None]:
    sha = hashlib.sha256()
    md5: Any = None
    if want_md5:
        try:
            md5 = hashlib.md5(usedforsecurity=False)
        except ValueError:  # a FIPS build without MD5: the ETag cross-check is skipped, sha256 still applies
            md5 = None
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
    return sha.hexdigest(), (md5.hexdigest() if md5 is not None else None)


def _download_why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk filled up while downloading; free some space and retry"
    last = getattr(exc, "last_exception", None)  # s3transfer's RetriesExceededError wraps the final error
    text = str(exc) if last is None else f"retries exhausted: {last}"
    if "did not match expected ETag" in text:
        return "the object changed while it was being downloaded; retry the deployment"
    return text or type(exc).__name__


def _head_error(client: Any, revision: S3Revision, exc: Any) -> RevisionUnavailable:
    """Turn an S3 error into a message that says what is missing or forbidden."""
    where = _describe(revision)
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if status == 404 or code in {"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion"}:
        if code != "NoSuchKey" and not _bucket_exists(client, revision.bucket):
            return RevisionUnavailable(f"{where}: bucket {revision.bucket!r} does not exist; check the bucket name")
        if revision.version:
            return RevisionUnavailable(
                f"{where}: no such object version in bucket {revision.bucket!r}; check the key and version id"
            )
        return RevisionUnavailable(f"{where}: no such object in bucket {revision.bucket!r}; check the key")
    if status == 400 and revision.version:
        return RevisionUnavailable(f"{where}: S3 rejected the version id ({code or 'HTTP 400'}); check it")
    if status == 403 or code in {"AccessDenied", "403"}:
        return RevisionUnavailable(
            f"{where}: access denied: this host's AWS identity needs s3:GetObject (s3:GetObjectVersion for a "
            "version id) on the object, and s3:ListBucket to tell a missing object from a forbidden one"
        )
    if status == 301 or code in {"PermanentRedirect", "301"}:
        return RevisionUnavailable(f"{where}: the bucket is in another region than the agent's; set the region")
    return RevisionUnavailable(f"{where}: S3 answered {code or 'an error'} (HTTP {status}): {exc}")


def _bucket_exists(client: Any, bucket: str) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return bool(status != 404)
    except BotoCoreError:
        return True  # cannot tell: do not claim the bucket is missing
    return True
