"""The service's front door, an ASGI middleware: an optional API key, a bounded upload, and malformed uploads
refused with a 4xx and a reason before BentoML parses them.

BentoML answers a multipart body without a boundary with a 500, and given text where the ``video`` file
belongs (a URL, say) it tries to fetch that URL from the server. Both are refused here: an upload must be a
``multipart/form-data`` body whose ``video`` part is a file. The body is read once into a spooled temporary
file (in memory up to 8 MB, on disk beyond), checked, then replayed to BentoML; a body over the limit is
refused with 413 as soon as it passes the limit (or at once, from its ``Content-Length``).

The key, when one is set (``AFFECTFLOW_API_KEY``, or ``AFFECTFLOW_API_KEY_FILE`` naming a file that holds
it), is required as ``Authorization: Bearer <key>`` on every route but the health probes.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEY_ENV, KEY_FILE_ENV, MAX_UPLOAD_ENV = "AFFECTFLOW_API_KEY", "AFFECTFLOW_API_KEY_FILE", "AFFECTFLOW_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 200          # a 10-minute 640x360 video for /timeline is ~30-60 MB
OPEN_PATHS = frozenset({"/readyz", "/livez", "/healthz"})   # probes answer without the key
UPLOAD_PATHS = frozenset({"/predict", "/timeline"})
UPLOAD_FIELD = "video"
_SPOOL_BYTES = 8 << 20
_CHUNK = 1 << 20


def configured_key() -> str | None:
    """The API key from ``AFFECTFLOW_API_KEY`` or the file ``AFFECTFLOW_API_KEY_FILE`` names; None: no key."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].strip()
    if os.environ.get(KEY_FILE_ENV):
        key = Path(os.environ[KEY_FILE_ENV]).read_text().strip()
        if not key:
            raise RuntimeError(f"{os.environ[KEY_FILE_ENV]} ({KEY_FILE_ENV}) is empty: no API key in it")
        return key
    return None


def max_upload_bytes() -> int:
    return int(float(os.environ.get(MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD_MB)) * (1 << 20))


class Refusal(Exception):
    def __init__(self, status: HTTPStatus, error: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(error)
        self.status, self.error, self.reason, self.headers = status, error, reason, headers or {}


class Guard:
    """Key check, then, for uploads, size and shape checks; ``on_refusal(reason)`` counts each refusal."""

    def __init__(self, app: ASGIApp, key: str | None, max_bytes: int,
                 on_refusal: Callable[[str], None] = lambda reason: None):
        self.app, self.key, self.max_bytes, self.on_refusal = app, key, max_bytes, on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_key(scope)
            if scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS:
                body = await self._read_body(scope, receive)
                try:
                    await _check_upload(scope, body)
                    await self.app(scope, _replay(body), send)
                finally:
                    body.close()
                return
        except Refusal as refused:
            self.on_refusal(refused.reason)
            response = JSONResponse({"error": refused.error}, refused.status, headers=refused.headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_key(self, scope: Scope) -> None:
        if self.key is None or scope["path"] in OPEN_PATHS:
            return
        sent = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.key}".encode()):
            raise Refusal(HTTPStatus.UNAUTHORIZED, "this server needs an API key: send 'Authorization: Bearer <key>'",
                          "unauthorised", {"WWW-Authenticate": "Bearer"})

    async def _read_body(self, scope: Scope, receive: Receive) -> tempfile.SpooledTemporaryFile:
        too_large = Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"upload over the server's limit of {self.max_bytes / (1 << 20):g} MB ({MAX_UPLOAD_ENV})",
                            "too large")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise too_large
        body, size = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES), 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body.close()
                raise Refusal(HTTPStatus.BAD_REQUEST, "the client went away during the upload", "disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                body.close()
                raise too_large
            body.write(chunk)
            if not message.get("more_body", False):
                body.seek(0)
                return body


def _replay(body: tempfile.SpooledTemporaryFile) -> Receive:
    """A ``receive`` that hands the buffered body on again, a chunk at a time, from its start."""
    body.seek(0)

    async def receive() -> Message:
        chunk = body.read(_CHUNK)
        return {"type": "http.request", "body": chunk, "more_body": len(chunk) == _CHUNK}
    return receive


async def _check_upload(scope: Scope, body: tempfile.SpooledTemporaryFile) -> None:
    """A multipart body with a boundary whose ``video`` part is a file, else a ``Refusal`` saying so."""
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    if not content_type.startswith("multipart/form-data") or "boundary=" not in content_type:
        raise Refusal(HTTPStatus.BAD_REQUEST, "send the video as a multipart/form-data upload with a boundary "
                      "(curl -F video=@clip.mp4 URL)", "malformed request")
    try:
        form = await Request(scope, _replay(body)).form()
    except Exception as err:  # starlette raises HTTPException/MultiPartException for malformed bodies
        raise Refusal(HTTPStatus.BAD_REQUEST, f"the multipart body cannot be read: {getattr(err, 'detail', err)}",
                      "malformed request") from err
    try:
        video = form.get(UPLOAD_FIELD)
        if video is None:
            raise Refusal(HTTPStatus.BAD_REQUEST, f"no '{UPLOAD_FIELD}' file in the upload (fields: "
                          f"{sorted(form.keys())}); send it as -F {UPLOAD_FIELD}=@clip.mp4", "malformed request")
        if isinstance(video, str):
            raise Refusal(HTTPStatus.BAD_REQUEST, f"'{UPLOAD_FIELD}' must be an uploaded file, not text or a URL: "
                          "the server fetches nothing", "malformed request")
    finally:
        await form.close()
