"""Log setup: plain text for people at a terminal, JSON lines (LOG_FORMAT=json, the chart's default) for
log pipelines. One INFO line per hook answer says what was decided (app.main); the dict passed as
`extra={"fields": {...}}` becomes top-level JSON keys, or `key=value` pairs in text (a dict, because
logging refuses extras named like LogRecord attributes, and a builder has a `name`)."""

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has: anything else on a record came in through `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "fields"}
    fields = getattr(record, "fields", None)
    return {**extras, **fields} if isinstance(fields, dict) else extras


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        text = super().format(record)
        if not extras:
            return text
        return text + " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in extras.items())


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The hook's own stderr handler, told apart from handlers others installed."""


def configure(level: str, fmt: str, access_log: bool) -> None:
    """Root handler in the chosen format; uvicorn's access log is off unless asked for (the hook's own
    line per answer says more), and uses the same format when on."""
    handler = _Handler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    # Replace only our own handler: others (a test's log capture) stay.
    root.handlers = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = not access_log
