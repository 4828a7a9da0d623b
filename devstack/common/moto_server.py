"""moto_server for the local stack, in a thread, with every request atomic (see moto_atomic)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from devstack.common.background import BackgroundServer
from devstack.common.moto_atomic import atomic_wsgi

# Hosts whose backend is remembered (a stack names a handful: one per service and region).
MAX_CACHED_HOSTS = 1024
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

        class Dispatcher(DomainDispatcherApplication):
            """moto's dispatcher with each host's backend looked up once. moto looks it up for every
            request, holding the dispatcher's one lock, by listing its own package directory (a
            stat of each of its ~200 entries): every AWS call waited its turn on that, and on
            the interpreter's lock again after each stat. The answer for a host never changes."""

            def __init__(self, create_app: Any) -> None:
                super().__init__(create_app)
                self._backend_of: dict[str | None, Any] = {}

            def get_backend_for_host(self, host: str | None) -> Any:
                # Called under self.lock (get_application), so the dict needs no lock of its own.
                if host not in self._backend_of:
                    if len(self._backend_of) >= MAX_CACHED_HOSTS:
                        self._backend_of.clear()
                    self._backend_of[host] = super().get_backend_for_host(host)
                return self._backend_of[host]

        app: Any = atomic_wsgi(Dispatcher(create_backend_app))
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
