"""structlog set-up: JSON lines when output is not a terminal (services, CI), readable
key=value lines in a terminal. Every service binds `stage`, and per frame `frame_id` and
`camera_id`, so one frame can be followed through the line."""

import logging
import sys

import structlog

from lineinspect.shared.config import get_settings

_configured = False


class _StderrLogger:
    """Writes each rendered line to whatever `sys.stderr` is at call time (so a logger made
    before pytest or a daemon swaps stderr never writes to a closed stream)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _StderrLoggerFactory:
    def __call__(self, *args: object) -> _StderrLogger:
        return _StderrLogger()


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    global _configured
    settings = get_settings()
    level_name = (level or settings.log_level).upper()
    fmt = fmt or settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)
        ),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str, **bound: object) -> structlog.typing.FilteringBoundLogger:
    if not _configured:
        configure_logging()
    return structlog.get_logger(name).bind(**bound)
