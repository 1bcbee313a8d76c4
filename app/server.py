"""Serving with uvicorn, hardened: a size limit on the request head (uvicorn's httptools
protocol has none), a deadline for reading each request (none either, so a client that opens
connections and never finishes them held them forever), no `server` banner, and an access log
that never shows a token put in an address, written by a thread of its own."""

import asyncio
import copy
import logging
import queue
import re
import threading
from typing import Any

import orjson
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings
from app.problems import TITLES, TYPE_BASE

_STATUS = {408: b"408 Request Timeout", 431: b"431 Request Header Fields Too Large"}
_DETAIL = {
    408: "Requête trop lente : la requête n'est pas arrivée en entier à temps.",
    431: "En-têtes de requête trop volumineux.",
}


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the two limits it lacks (Settings.max_header_bytes,
    Settings.request_read_timeout_seconds). The clock starts at the connection or at the
    first byte of a request, and stops when the request has fully arrived: an application
    that takes long to answer is not cut off. A kept-alive connection waiting for its next
    request is uvicorn's (closed after timeout_keep_alive)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head = settings.max_header_bytes
        self.read_timeout = settings.request_read_timeout_seconds
        self.head_bytes = 0  # raw bytes received while the head is incomplete
        self.head_done = False
        self.head_too_large = False
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self.head_done:
            self.head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this chunk: every byte of it was head.
        if not self.head_done and self.head_bytes > self.max_head:
            self._refuse(431)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self.head_done = True
        head_size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if head_size > self.max_head:
            # Stops the parser; uvicorn then calls send_400_response, answered below.
            self.head_too_large = True
            raise ValueError("request head too large")
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self.head_too_large:
            self._refuse(431)
        else:
            super().send_400_response(msg)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self.head_done, self.head_bytes = False, 0

    def _arm(self) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(self.read_timeout, self._deadline_passed)

    def _deadline_passed(self) -> None:
        # A busy loop may run this timer before reading bytes that arrived in time. A timer
        # due now runs after the next poll's reads: if the request is complete by then, the
        # read disarms this second look.
        self.deadline = self.loop.call_later(0, self._refuse, 408)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _refuse(self, status: int) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        if status == 408 and self.head_bytes == 0 and not self.head_done:
            self.transport.close()  # not a byte of a request: nothing to answer
            return
        body = orjson.dumps(
            {
                "type": f"{TYPE_BASE}{status}",
                "title": TITLES[status],
                "status": status,
                "detail": _DETAIL[status],
            }
        )
        head = [
            b"HTTP/1.1 " + _STATUS[status],
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode(),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()


_TOKENS_IN_QUERY = re.compile(r"(?i)([?&](?:access_token|token|api_key|apikey|key)=)[^&\s]*")


class HideTokens(logging.Filter):
    """Access-log lines show `access_token=…` (and the like) masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = _TOKENS_IN_QUERY.sub(r"\1***", str(args[2]))
            record.args = tuple(args)
        return True


class BackgroundStreamHandler(logging.Handler):
    """The access log off the event loop: a record is handed to a thread that filters,
    formats and writes it (the loop spent ~4% of an orientation's CPU on that line). Records
    still queued at exit are written by close(), which logging calls at shutdown."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__()
        self._target = logging.StreamHandler(stream)
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
        self._thread.start()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self._target.setFormatter(fmt)

    def addFilter(self, filter: Any) -> None:
        self._target.addFilter(filter)

    def emit(self, record: logging.LogRecord) -> None:
        self._queue.put(record)

    def _write(self) -> None:
        while (record := self._queue.get()) is not None:
            self._target.handle(record)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(5)
        self._target.close()
        super().close()


def log_config() -> dict[str, Any]:
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"hide_tokens": {"()": "app.server.HideTokens"}}
    config["handlers"]["access"]["filters"] = ["hide_tokens"]
    config["handlers"]["access"]["class"] = "app.server.BackgroundStreamHandler"
    return config


def serve(host: str, port: int, workers: int = 1) -> None:
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="app.server:GuardedProtocol",
        server_header=False,
        # X-Forwarded-For is believed from Settings.trusted_proxies only (app.main), never
        # from any local peer as uvicorn does by default.
        proxy_headers=False,
        log_config=log_config(),
        timeout_keep_alive=5,
        # A worker starting on a busy machine (imports, the caches' first load) may take more
        # than uvicorn's 5 s to answer its supervisor: it was killed and restarted in a loop.
        timeout_worker_healthcheck=60,
    )
