"""structlog JSON logging with secrets redacted before anything is written."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, BinaryIO, TextIO

import orjson
import structlog

_SECRET_KEYS = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key|dsn|_url$", re.I)
# user:password@ in any URL-looking text (DSNs in error messages, settings dumps).
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]+)@", re.I)
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.I)


def scrub(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _BEARER.sub(r"\1***", text)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key in {"event", "level", "timestamp", "logger"}:
            if isinstance(value, str):
                event[key] = scrub(value)
            continue
        if _SECRET_KEYS.search(key) and value not in (None, "", False):
            event[key] = scrub(value) if isinstance(value, str) and key.endswith("url") else "***"
        elif isinstance(value, str):
            event[key] = scrub(value)
    return event


def _scrub_exception(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc = event.get("exception")
    if isinstance(exc, str):
        event["exception"] = scrub(exc)
    return event


class _NamedBytesLogger(structlog.BytesLogger):
    """structlog's fastest logger, plus the ``name`` that add_logger_name reads."""

    def __init__(self, name: str, file: BinaryIO) -> None:
        super().__init__(file)
        self.name = name

    def msg(self, message: bytes) -> None:
        # A closed or broken stdout must never turn a request into a 500.
        with contextlib.suppress(OSError, ValueError):
            super().msg(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _NamedPrintLogger(structlog.PrintLogger):
    def __init__(self, name: str, file: TextIO) -> None:
        super().__init__(file)
        self.name = name


class _LineHandler(logging.Handler):
    """Stdlib records (uvicorn, SQLAlchemy, alembic) as whole lines on the same stream.

    Our own logs skip the stdlib machinery (it cost ~11 % of a cached request's CPU);
    both writers emit one complete line per write and flush, so lines never interleave.
    """

    def __init__(self, stream: BinaryIO | None) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self.stream is None:
                print(line, flush=True)
            else:
                self.stream.write(line.encode("utf-8", "replace") + b"\n")
                self.stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(*, level: str = "INFO", json: bool = True, service: str | None = None) -> None:
    """One JSON line per event, secrets redacted, for structlog and stdlib loggers alike."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if service:
        shared.insert(0, lambda _, __, event: {**event, "service": service})
    tail: list[structlog.types.Processor] = [structlog.processors.format_exc_info, _scrub_exception]
    stream: BinaryIO | None = getattr(sys.stdout, "buffer", None)

    def logger_factory(*args: Any) -> Any:
        name = str(args[0]) if args else ""
        if json and stream is not None:
            return _NamedBytesLogger(name, stream)
        return _NamedPrintLogger(name, sys.stdout)

    native_renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=orjson.dumps) if json and stream is not None
        else structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, *tail, native_renderer],
        logger_factory=logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail,
            structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False),
        ],
    )
    handler = _LineHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # We log one line per request ourselves; uvicorn's access log would double it.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # One line per outgoing request is noise at INFO (and would log URLs we call).
    logging.getLogger("httpx").setLevel(logging.WARNING)
