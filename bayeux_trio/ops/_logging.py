"""Log output for ``bayeux serve``: plain text, or one JSON object per line.

``--log-format json`` suits log shippers (Loki, Elasticsearch, CloudWatch):
each record becomes ``{"time", "level", "logger", "message", ...}``, plus the
fields a call passed with ``extra=`` (``client_id``, ``event``...) and the
traceback as ``exception`` when there is one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: what every LogRecord has: anything else came from ``extra=``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; time in UTC, ISO 8601."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str: an extra field that is not JSON must not lose the line.
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, fmt: str = "text") -> None:
    """Send the root logger's records to stderr at ``level``, as ``fmt``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx (the backend hooks' client) logs every request at info: one line
    # per hook call would drown the server's own; its warnings still show.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
