"""What a fetcher hands to the engine: a revision bundle on local disk, ready for `unpack`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.model.revision import Revision


@dataclass(frozen=True)
class FetchedBundle:
    """A fetched revision: ``path`` is a local archive (or folder for ``directory``) of type ``bundle_type``.

    ``env`` holds the ``BUNDLE_*`` variables given to hooks (empty for local revisions); ``details`` is shown in
    reports (for example sha256, etag, version).
    """

    path: Path
    bundle_type: str
    env: Mapping[str, str]
    details: Mapping[str, Any]


class Fetcher(Protocol):
    """Gets one kind of revision onto local disk."""

    def fetch(self, revision: Revision, workdir: Path) -> FetchedBundle:
        """Fetch ``revision``. ``workdir`` exists and is empty: a remote fetcher downloads into it, and the engine
        deletes it after unpacking. Raises RevisionUnavailable (or ChecksumMismatch) when the revision cannot be had.
        """
        ...
