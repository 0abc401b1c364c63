"""Where a revision comes from (SPEC §4): a local path, an S3 object or a GitHub commit. Pure data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

BUNDLE_TYPES = ("tar", "tgz", "zip", "directory")

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$|^[A-Za-z0-9._/-]{1,200}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class RevisionError(ValueError):
    """A revision description is malformed; the message names the field and the fix."""


@dataclass(frozen=True)
class LocalRevision:
    path: str
    bundle_type: str
    kind: str = "local"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "local", "path": self.path, "bundle_type": self.bundle_type}


@dataclass(frozen=True)
class S3Revision:
    bucket: str
    key: str
    bundle_type: str
    version: str | None = None
    etag: str | None = None
    sha256: str | None = None
    kind: str = "s3"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "s3",
            "bucket": self.bucket,
            "key": self.key,
            "bundle_type": self.bundle_type,
            "version": self.version,
            "etag": self.etag,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class GitHubRevision:
    repository: str  # owner/repo
    commit: str
    bundle_type: str = "tgz"  # GitHub serves tarballs
    kind: str = "github"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "github",
            "repository": self.repository,
            "commit": self.commit,
            "bundle_type": self.bundle_type,
        }


Revision = LocalRevision | S3Revision | GitHubRevision


def _str(d: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            raise RevisionError(f"revision.{key} is required")
        return None
    if not isinstance(value, str) or not value:
        raise RevisionError(f"revision.{key} must be a non-empty string")
    return value


def _bundle_type(d: dict[str, Any], default: str | None = None) -> str:
    value = d.get("bundle_type", default)
    if value not in BUNDLE_TYPES:
        raise RevisionError(f"revision.bundle_type must be one of {', '.join(BUNDLE_TYPES)}, not {value!r}")
    return str(value)


def revision_from_dict(d: Any) -> Revision:
    """Parse a revision object of a command; raises :class:`RevisionError` naming the bad field."""
    if not isinstance(d, dict):
        raise RevisionError("revision must be an object with a 'type' of local, s3 or github")
    kind = d.get("type")
    if kind == "local":
        return LocalRevision(path=str(_str(d, "path")), bundle_type=_bundle_type(d))
    if kind == "s3":
        sha = _str(d, "sha256", required=False)
        if sha is not None and not _SHA256.match(sha):
            raise RevisionError("revision.sha256 must be 64 lowercase hex digits")
        return S3Revision(
            bucket=str(_str(d, "bucket")),
            key=str(_str(d, "key")),
            bundle_type=_bundle_type(d),
            version=_str(d, "version", required=False),
            etag=_str(d, "etag", required=False),
            sha256=sha,
        )
    if kind == "github":
        repo = str(_str(d, "repository"))
        if not _REPO.match(repo):
            raise RevisionError("revision.repository must look like owner/repo")
        commit = str(_str(d, "commit"))
        if not _COMMIT.match(commit) or ".." in commit:
            raise RevisionError("revision.commit must be a commit id or ref name")
        return GitHubRevision(repository=repo, commit=commit, bundle_type=_bundle_type(d, "tgz"))
    raise RevisionError(f"revision.type must be local, s3 or github, not {kind!r}")
