"""Static files: the browser client and an application's own pages.

Files are read once and cached with their SHA-1 (the ETag, as Faye sends it)
and modification time; ``If-None-Match`` and ``If-Modified-Since`` get 304.
Only names inside the root are served: the requested path is resolved and must
stay under the root, so ``..`` and symlinks out of it give 404.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote

__all__ = ["StaticFile", "StaticFiles"]

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str
    mtime: float

    @property
    def last_modified(self) -> str:
        return formatdate(self.mtime, usegmt=True)

    def not_modified(self, if_none_match: str | None, if_modified_since: str | None) -> bool:
        """True if the client's copy is current."""
        if if_none_match is not None:
            tags = {t.strip().strip('"') for t in if_none_match.split(",")}
            return self.etag in tags or "*" in tags
        if if_modified_since is not None:
            try:
                since = parsedate_to_datetime(if_modified_since).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
            return int(self.mtime) <= since
        return False


class StaticFiles:
    """Files under one directory, by URL path."""

    def __init__(self, root: Path, *, index: str | None = "index.html") -> None:
        self.root = root.resolve()
        self.index = index
        self._cache: dict[Path, StaticFile] = {}

    def get(self, url_path: str) -> StaticFile | None:
        """The file for a URL path (relative to this root), or None."""
        relative = unquote(url_path).lstrip("/")
        if "\x00" in relative:
            return None
        target = (self.root / relative).resolve()
        if target != self.root and self.root not in target.parents:
            return None
        if target.is_dir():
            if self.index is None:
                return None
            target = target / self.index
        try:
            stat = target.stat()
        except OSError:
            return None
        if not target.is_file():
            return None
        cached = self._cache.get(target)
        if cached is not None and cached.mtime == stat.st_mtime:
            return cached
        body = target.read_bytes()
        content_type = _TYPES.get(target.suffix) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        entry = StaticFile(body, content_type, hashlib.sha1(body).hexdigest(), stat.st_mtime)
        self._cache[target] = entry
        return entry
