"""Plain HTTP on the WebSocket port: health, metrics, static files.

Answers are built here as websockets Response objects; the transport sends them and closes
the connection (browsers open another one for the next file; a game page loads few).
"""

from __future__ import annotations

import email.utils
import json
import mimetypes
import os
from http import HTTPStatus
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = ["response", "json_response", "static_file", "DEFAULT_STATIC", "JS_ROOT", "CLIENT_ENTRY"]

DEFAULT_STATIC = os.path.join(os.path.dirname(__file__), "static")
# The JavaScript runtime and client (codecs/js in the repository, linked into the package):
# served under /tickwire/, and /tickwire.js is the client's entry point, as SocketCluster
# served its client.
JS_ROOT = os.path.join(DEFAULT_STATIC, "tickwire")
CLIENT_ENTRY = b'export * from "./tickwire/client.js";\n'
MAX_STATIC_FILE = 16 * 1024 * 1024


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    phrase = HTTPStatus(status).phrase
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    for k, v in (extra or {}).items():
        headers[k] = v
    return Response(status, phrase, headers, body)


def json_response(value: Any, status: int = 200) -> Response:
    return response(status, json.dumps(value, indent=1).encode(), "application/json", {"Cache-Control": "no-store"})


def text_response(text: str, status: int = 200, extra: dict[str, str] | None = None) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8", extra)


def static_file(roots: list[str], path: str) -> Response:
    """A file under one of the roots (first match wins), never outside them."""
    clean = path.split("?", 1)[0].split("#", 1)[0]
    if clean.endswith("/"):
        clean += "index.html"
    parts = [p for p in clean.split("/") if p]
    if any(p in ("..", ".") or p.startswith(".") or "\\" in p for p in parts):
        return text_response("not found\n", 404)
    for root in roots:
        full = os.path.realpath(os.path.join(root, *parts))
        base = os.path.realpath(root)
        if not (full == base or full.startswith(base + os.sep)) or not os.path.isfile(full):
            continue
        if os.path.getsize(full) > MAX_STATIC_FILE:
            return text_response("file too large\n", 413)
        with open(full, "rb") as fh:
            body = fh.read()
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        if full.endswith((".js", ".mjs")):
            ctype = "text/javascript; charset=utf-8"
        return response(200, body, ctype, {"Cache-Control": "no-cache"})
    return text_response("not found\n", 404)
