"""Local revisions (SPEC §4): an archive or a folder already on this host, used where it is (never copied)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agent.errors import RevisionUnavailable
from agent.fetchers.base import FetchedBundle
from agent.model.revision import LocalRevision, Revision


class LocalFetcher:
    """Fetcher for :class:`LocalRevision`: checks the path and returns it as it is (``workdir`` stays empty)."""

    def fetch(self, revision: Revision, workdir: Path) -> FetchedBundle:
        """Return the local bundle; raises RevisionUnavailable when the path is missing, unreadable or of the
        wrong kind (a folder given as an archive type, or a file given as ``directory``)."""
        if not isinstance(revision, LocalRevision):
            raise TypeError(f"LocalFetcher cannot fetch a {revision.kind} revision")
        path = Path(os.path.abspath(os.path.expanduser(revision.path)))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise RevisionUnavailable(f"local revision {path} does not exist (check the path)") from None
        except OSError as exc:
            raise RevisionUnavailable(f"cannot read local revision {path}: {exc.strerror}") from exc
        is_dir = stat.S_ISDIR(st.st_mode)
        if revision.bundle_type == "directory" and not is_dir:
            raise RevisionUnavailable(f"local revision {path} is not a folder but bundle type is directory")
        if revision.bundle_type != "directory" and not stat.S_ISREG(st.st_mode):
            kind = "a folder" if is_dir else "not a regular file"
            raise RevisionUnavailable(
                f"local revision {path} is {kind} but bundle type is {revision.bundle_type}"
                + (" (use bundle type directory)" if is_dir else "")
            )
        if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
            raise RevisionUnavailable(f"local revision {path} is not readable by the agent")
        details = {"path": str(path)} if is_dir else {"path": str(path), "size": st.st_size}
        return FetchedBundle(path=path, bundle_type=revision.bundle_type, env={}, details=details)
