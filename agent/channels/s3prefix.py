"""The S3 prefix channel: commands are objects under ``s3://BUCKET/PREFIX/commands/<instance-id>/``.

Layout (docs/protocol.md, "AWS channels")::

    commands/<instance-id>/<name>.json              new commands (berth's client: <UTC time>-<deployment id>.json)
    commands/<instance-id>/done/<name>.json         handled commands, moved here after the report was written
    commands/<instance-id>/rejected/<name>.json     refused commands, beside <name>.reason (``Reason: message``)

The background thread lists ``commands/<instance-id>/`` (ListObjectsV2, one level) every ``poll_interval``
seconds while the daemon waits for work and takes the oldest object it has not handled (by LastModified, then key).

Each command runs once, also across restarts: before a command is handed to the daemon its key and ETag are
recorded in a local claims file (``<state_dir>/claims.json``, atomic). A claimed command left by a crash is
delivered again at the next start (the daemon's idempotency store then re-emits its report instead of running it
again); a handled one is never delivered again, even when moving it to done/ fails (no permission to delete, S3
unreachable): the move is retried, and the listing skips it meanwhile. The object is identified by key and ETag, so
a sender who overwrites a handled key with a new command gets the new command run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.channels.base import Delivery
from agent.channels.remote import Operation, RemoteChannel, client_error_status, is_permanent
from agent.fsutil import read_state, write_state
from agent.model.command import MAX_COMMAND_BYTES

log = logging.getLogger(__name__)

_KIND = "s3-channel-claims"
_VERSION = 1
CLAIMED, DONE, REJECTED = "claimed", "done", "rejected"


def normalise_prefix(prefix: str) -> str:
    """``"a/b"``, ``"/a/b/"`` -> ``"a/b/"``; an empty prefix stays empty (the bucket's root)."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def commands_prefix(prefix: str, instance_id: str) -> str:
    """The key prefix under which ``instance_id``'s commands are put."""
    return f"{normalise_prefix(prefix)}commands/{instance_id}/"


@dataclass(frozen=True)
class S3Claim:
    """The receipt of an S3 command: which object (key and ETag) was claimed."""

    key: str
    etag: str


class S3PrefixChannel(RemoteChannel):
    """Commands from an S3 prefix, one object each. ``state_dir`` holds the claims file (created if missing)."""

    name = "s3"

    def __init__(
        self,
        client_factory: Callable[[], Any],
        bucket: str,
        prefix: str,
        instance_id: str,
        state_dir: Path,
        *,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._client_factory = client_factory
        self.bucket = bucket
        self.folder = commands_prefix(prefix, instance_id)
        self.claims_file = state_dir / "claims.json"
        self._claims: dict[str, dict[str, Any]] = {}
        self._claims_lock = threading.Lock()
        self._leftovers: deque[S3Claim] = deque()

    # ------------------------------------------------------------------------------------------ Channel API
    def start(self) -> None:
        """Load the claims file: commands claimed by a crashed run are delivered first, pending moves resumed."""
        doc = read_state(self.claims_file, _KIND, _VERSION)
        claims = doc.get("claims", {}) if doc else {}
        self._claims = {str(k): dict(v) for k, v in claims.items() if isinstance(v, dict)}
        for key, claim in sorted(self._claims.items(), key=lambda kv: str(kv[1].get("at", ""))):
            if claim.get("state") == CLAIMED:
                self._leftovers.append(S3Claim(key, str(claim.get("etag", ""))))
            else:
                self._schedule_move(key, str(claim.get("state")), str(claim.get("reason") or ""))
        if self._leftovers:
            log.warning("%d s3 command(s) were claimed by an earlier run and not finished", len(self._leftovers))
        super().start()

    def ack(self, delivery: Delivery) -> None:
        """Record the command as handled (never delivered again), then move it to done/ in the background."""
        claim: S3Claim = delivery.receipt
        self._set_claim(claim.key, DONE, etag=claim.etag)
        self._schedule_move(claim.key, DONE, "")

    def reject(self, delivery: Delivery, reason: str, message: str) -> None:
        """Record the command as refused, then move it to rejected/ with a ``.reason`` object beside it."""
        claim: S3Claim = delivery.receipt
        one_line = " ".join(message.split())
        log.warning("rejected s3 command %s: %s: %s", delivery.source, reason, one_line)
        self._set_claim(claim.key, REJECTED, etag=claim.etag, reason=f"{reason}: {one_line}")
        self._schedule_move(claim.key, REJECTED, f"{reason}: {one_line}")

    def extend(self, delivery: Delivery) -> None:
        """Nothing to do: a claim does not expire."""

    # ------------------------------------------------------------------------------------------- internals
    def _client(self) -> Any:
        return self._client_factory()

    def _poll(self) -> list[Delivery]:
        while self._leftovers:
            leftover = self._leftovers[0]
            delivery = self._fetch(leftover.key, leftover.etag)
            self._leftovers.popleft()
            if delivery is not None:
                return [delivery]
            self._forget(leftover.key)
        listed = self._list()
        with self._claims_lock:
            known = dict(self._claims)
        # Claims of objects that are gone (moved by us, or deleted by the sender) are no longer needed.
        stale = [k for k, c in known.items() if k not in listed and c.get("state") != CLAIMED
                 and not self._move_pending(k)]
        for key in stale:
            self._forget(key)
        fresh = [(obj["LastModified"], key, obj["ETag"]) for key, obj in listed.items()
                 if known.get(key, {}).get("etag") != obj["ETag"]]
        for _, key, etag in sorted(fresh):
            delivery = self._fetch(key, etag)
            if delivery is not None:
                return [delivery]
        return []

    def _list(self) -> dict[str, dict[str, Any]]:
        """Command objects directly under the folder: key -> {ETag, LastModified}."""
        client = self._client()
        found: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.folder, "Delimiter": "/"}
        while True:
            page = client.list_objects_v2(**kwargs)
            for obj in page.get("Contents") or []:
                key = str(obj["Key"])
                name = key[len(self.folder):]
                if name.endswith(".json") and not name.startswith(".") and "/" not in name:
                    found[key] = {"ETag": str(obj.get("ETag", "")), "LastModified": obj.get("LastModified")}
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found
            kwargs["ContinuationToken"] = token

    def _fetch(self, key: str, etag: str) -> Delivery | None:
        """Read the object and claim it; ``None`` when it vanished or changed meanwhile (the next list sees it)."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = etag
        try:
            response = self._client().get_object(**kwargs)
        except ClientError as exc:
            if client_error_status(exc) in (404, 412):
                return None
            raise
        with response["Body"] as body:
            data = body.read(MAX_COMMAND_BYTES + 1)  # more than the limit is enough to reject it
        real_etag = str(response.get("ETag") or etag)
        self._set_claim(key, CLAIMED, etag=real_etag)
        log.info("claimed s3 command s3://%s/%s", self.bucket, key)
        return Delivery(command_bytes=data, receipt=S3Claim(key, real_etag), source=f"s3://{self.bucket}/{key}")

    def _release(self, delivery: Delivery) -> None:
        """A command claimed while stopping is un-claimed, so the next start takes it as new."""
        claim: S3Claim = delivery.receipt
        self._forget(claim.key)

    def _schedule_move(self, key: str, state: str, reason: str) -> None:
        name = key[len(self.folder):] if key.startswith(self.folder) else key.rsplit("/", 1)[-1]
        target = f"{self.folder}{'done' if state == DONE else 'rejected'}/{name}"

        def move() -> None:
            from botocore.exceptions import ClientError

            client = self._client()
            if state == REJECTED and reason:
                reason_key = target[: -len(".json")] + ".reason" if target.endswith(".json") else target + ".reason"
                client.put_object(Bucket=self.bucket, Key=reason_key, Body=(reason + "\n").encode(),
                                  ContentType="text/plain; charset=utf-8")
            try:
                client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key})
            except ClientError as exc:
                if client_error_status(exc) != 404:  # already moved (a retry after a lost answer): just delete
                    raise
            client.delete_object(Bucket=self.bucket, Key=key)

        def moved() -> None:
            log.debug("s3 command %s moved to %s", key, target)
            self._forget(key)

        def permanent(exc: BaseException) -> bool:
            # The claim stays recorded, so the command is still never run twice; only the listing keeps it.
            return is_permanent(exc)

        self._schedule(Operation(name=f"move of {key} to {target}", call=move, on_done=moved, give_up=permanent))

    def _move_pending(self, key: str) -> bool:
        with self._ops_lock:
            return any(op.name.startswith(f"move of {key} ") for op in self._ops)

    def _set_claim(self, key: str, state: str, *, etag: str, reason: str = "") -> None:
        with self._claims_lock:
            self._claims[key] = {"etag": etag, "state": state, "reason": reason or None,
                                 "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._save()

    def _forget(self, key: str) -> None:
        with self._claims_lock:
            if self._claims.pop(key, None) is not None:
                self._save()

    def _save(self) -> None:
        write_state(self.claims_file, _KIND, _VERSION, {"bucket": self.bucket, "folder": self.folder,
                                                        "claims": self._claims})
