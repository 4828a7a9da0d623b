"""moto_server for the local stack, in a thread, with every request atomic (see moto_atomic)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from devstack.moto_atomic import atomic_wsgi

Middleware = Callable[[Callable[..., Iterable[bytes]]], Callable[..., Iterable[bytes]]]


class LocalMotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, middleware: Middleware | None = None) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *_args: object) -> None:
                pass

        app: Any = atomic_wsgi(DomainDispatcherApplication(create_backend_app))
        if middleware is not None:
            app = middleware(app)
        self._server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalMotoServer:
        # moto keeps its state in process-wide backends: a new local AWS starts empty.
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
