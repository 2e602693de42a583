"""Send a notification to every open page, from any Python program.

    python examples/broadcast/notify.py "Deploy finished"
    python examples/broadcast/notify.py --level alert "Disk almost full"

It POSTs ``message=<JSON>`` to the endpoint, exactly as
``curl http://localhost:9292/faye -d 'message=...'`` does: no session, no
dependency beyond the standard library, from any process that can reach the
server. Call :func:`notify` from your own code to do the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from urllib.parse import urlencode
from urllib.request import Request, urlopen

__all__ = ["CHANNEL", "DEFAULT_URL", "NotifyError", "notify"]

DEFAULT_URL = "http://localhost:9292/faye"
CHANNEL = "/notifications"
LEVELS = ("info", "warning", "alert")


class NotifyError(Exception):
    """The server refused the message; the argument is its error."""


def notify(
    text: str,
    *,
    level: str = "info",
    url: str = DEFAULT_URL,
    channel: str = CHANNEL,
    timeout: float = 10.0,
) -> None:
    """Publish ``{"text": text, "level": level}`` on ``channel``.

    Raises :class:`NotifyError` if the server refuses it, and ``OSError``
    (``urllib.error.URLError``) if it cannot be reached.
    """
    message = {"channel": channel, "data": {"text": text, "level": level}}
    body = urlencode({"message": json.dumps(message)}).encode()
    with urlopen(Request(url, data=body, method="POST"), timeout=timeout) as response:
        replies = json.load(response)
    reply = replies[0] if isinstance(replies, list) and replies else {}
    if reply.get("successful") is not True:
        raise NotifyError(reply.get("error", f"unexpected reply: {replies!r}"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Push a notification to the broadcast demo.")
    parser.add_argument("text", help="what the pages show")
    parser.add_argument("--level", choices=LEVELS, default="info")
    parser.add_argument("--url", default=DEFAULT_URL, help="the endpoint (default: %(default)s)")
    parser.add_argument("--channel", default=CHANNEL, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        notify(args.text, level=args.level, url=args.url, channel=args.channel)
    except (NotifyError, OSError) as exc:
        print(f"notify: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
