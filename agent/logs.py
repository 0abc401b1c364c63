"""Logging: structlog over stdlib logging (ARCHITECTURE.md, house style 1).

- ``<log_dir>/agent.log``: one JSON object per line (``timestamp``, ``level``, ``logger``, ``message`` and the bound
  context: ``deployment_id``, ``lifecycle_event``, ``instance_id``...). logrotate owns rotation (the packages ship
  /etc/logrotate.d/berth-agent): the file is opened with :class:`~logging.handlers.WatchedFileHandler`, which
  reopens it when logrotate moves it away and simply keeps appending after a ``copytruncate``. Unlike a
  size-rotating handler inside the agent, this stays correct when two processes (the daemon and a
  ``deploy-local``) append to the same file, and never fights logrotate over ``agent.log.1``.
- stderr: readable coloured lines when it is a terminal, else JSON lines (under systemd: the journal).
- ``<log_dir>/deployments.log``: one JSON line per finished deployment (:func:`deployments_log`).

Modules log with ``logging.getLogger(__name__)`` or :func:`get_logger`; both get the bound context. Context lives
in contextvars, which a new thread does not inherit: run thread targets with ``contextvars.copy_context().run``
when their lines must carry the deployment id. structlog is imported only when used, to keep ``berth --help`` fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import UsageError

if TYPE_CHECKING:
    import structlog

AGENT_LOG = "agent.log"
DEPLOYMENTS_LOG = "deployments.log"
LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Chatty libraries: their debug lines (every HTTP request, every inotify event) drown the agent's own.
_QUIET = ("botocore", "boto3", "urllib3", "s3transfer", "watchdog", "watchtower")
_MARK = "_berth_handler"


_LEADING = ("timestamp", "level", "logger", "message", "deployment_id", "lifecycle_event")


def _leading_keys(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Put the keys a reader scans for first on every JSON line."""
    head = {k: event[k] for k in _LEADING if k in event}
    return {**head, **{k: v for k, v in event.items() if k not in head}}


def _open_file_handler(path: Path) -> logging.handlers.WatchedFileHandler:
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        os.chmod(path, 0o640)  # hook output can hold secrets
    except OSError as exc:
        raise UsageError(
            f"cannot write the log file {path}: {exc.strerror}; set log_dir in the agent configuration"
            " or fix the folder's permissions"
        ) from exc
    return handler


def setup_logging(*, log_dir: Path | None, level: str = "info", console: bool | None = None) -> None:
    """Configure structlog and the root logger. Calling it again replaces the previous set-up (idempotent).

    ``log_dir`` None logs to stderr only. ``console``: None picks readable lines when stderr is a terminal and JSON
    otherwise; True forces readable lines, False JSON. Raises UsageError when the log file cannot be opened.
    """
    import structlog

    if level not in LEVELS:
        raise UsageError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared[:3],
            structlog.stdlib.PositionalArgumentsFormatter(),
            shared[4],
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,  # a second setup_logging must reach loggers made before it
    )
    as_json = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),  # "event" would read like a lifecycle event
            _leading_keys,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    readable = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
    )
    handlers: list[logging.Handler] = []
    if log_dir is not None:
        file_handler = _open_file_handler(log_dir / AGENT_LOG)
        file_handler.setFormatter(as_json)
        handlers.append(file_handler)
    stream = logging.StreamHandler(sys.stderr)
    use_readable = sys.stderr.isatty() if console is None else console
    stream.setFormatter(readable if use_readable else as_json)
    handlers.append(stream)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(LEVELS[level])
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.INFO if level == "debug" else logging.WARNING)


class _JsonLineFormatter(logging.Formatter):
    """A mapping message becomes the JSON object itself; anything else becomes ``{"message": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = dict(record.msg) if isinstance(record.msg, Mapping) else {"message": record.getMessage()}
        if "timestamp" not in body:
            moment = datetime.fromtimestamp(record.created, timezone.utc)
            body = {"timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"), **body}
        return json.dumps(body, default=str)


def deployments_log(log_dir: Path) -> logging.Logger:
    """The logger of ``<log_dir>/deployments.log``: ``deployments_log(d).info(summary_dict)`` writes the dict as
    one JSON line (a ``timestamp`` is added when missing). Does not propagate to the agent's log; logrotate rotates
    it like agent.log.
    Calling it again with the same folder returns the same logger; with another folder, it moves the file."""
    logger = logging.getLogger("berth.deployments")
    path = str(log_dir / DEPLOYMENTS_LOG)
    if any(getattr(h, "baseFilename", None) == os.path.abspath(path) for h in logger.handlers):
        return logger
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler = _open_file_handler(Path(path))
    handler.setFormatter(_JsonLineFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger (``log.info("message", key=value)``) going through the handlers of :func:`setup_logging`."""
    import structlog

    return structlog.stdlib.get_logger(name)


@contextlib.contextmanager
def bind_context(**values: Any) -> Iterator[None]:
    """Add ``values`` to every log line made in this context (this thread or task); restored on exit."""
    import structlog

    with structlog.contextvars.bound_contextvars(**values):
        yield


@contextlib.contextmanager
def bind_deployment(deployment_id: str, lifecycle_event: str | None = None) -> Iterator[None]:
    """Every line logged inside carries ``deployment_id`` (and ``lifecycle_event`` when given; nest a second
    ``bind_deployment`` per event)."""
    values: dict[str, Any] = {"deployment_id": deployment_id}
    if lifecycle_event is not None:
        values["lifecycle_event"] = lifecycle_event
    with bind_context(**values):
        yield


def set_context(**values: Any) -> None:
    """Bind ``values`` for the rest of this thread's life (the daemon's ``instance_id``)."""
    import structlog

    structlog.contextvars.bind_contextvars(**values)
