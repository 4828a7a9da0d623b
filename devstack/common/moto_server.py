"""moto_server for the local stack, in a thread, with every request atomic (see moto_atomic)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from devstack.common.background import BackgroundServer
from devstack.common.moto_atomic import atomic_wsgi

Middleware = Callable[[Callable[..., Iterable[bytes]]], Callable[..., Iterable[bytes]]]


class LocalMotoServer(BackgroundServer):
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
        super().__init__(
            make_server(host, port, app, threaded=True, request_handler=QuietHandler), "moto-server"
        )

    @property
    def endpoint_url(self) -> str:
        return self.base_url

    def start(self) -> LocalMotoServer:
        # moto keeps its state in process-wide backends: a new local AWS starts empty.
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
        self.start_serving()
        return self
