"""3. Safe fetch overhead: the same ~1 MB PNG over TLS from an allow-listed https host, through
image_pipeline.safe_fetch.fetch_image with every check on (no trusted origin), against a keep-alive httpx
GET over the same TLS (the figure's floor), alternated call by call, in several rounds.

The peers are safe_fetch's own test peers (tests/unit/safe_fetch/peers.py): a LocalServer with a
certificate from `tls_material` for img.allowed.test, and `fake_resolver`, which answers that name with a
public address (93.184.216.34). fetch_image resolves the name through it, checks the address, the
allow-list, https and port 443, pins the request to the address (SNI and the certificate on the name) and
checks the connection's peer. Only the last hop is stood in for: a network backend routes that public
address, port 443, to the server on 127.0.0.1 and reports the address it stands for as the socket's peer
(`PublicRoutes`). The baseline goes through the same backend, the same TLS and the same server.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpcore
import httpx

from tests.bench.common import (
    EXIT_ERROR,
    Row,
    add_code_paths,
    banner,
    median,
    ms,
    percentile,
    print_table,
    ratio,
    spread,
    summary_rows,
    use_local_environment,
)

ROUNDS = 5
CALLS = 40  # per method and round
WARM_UP = 3
IMAGE_SIDE = 590  # random RGB pixels barely compress: ~1 MB of PNG
HOST = "img.allowed.test"  # on the policy's allow-list; fake_resolver answers it with PUBLIC_A
KEEP_ALIVE = "httpx.Client.get, keep-alive (the floor)"
FRESH = "httpx.Client.get, a new TLS connection each"
SAFE = "safe_fetch.fetch_image, allow-listed https"
CHECKS = "  of which verify_image + sha256"
TARGET = 1.5  # issue 13: fetch_image <= 1.5x the bare reused GET


def noise_png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = random.Random(3).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------- the server


def serve(image_path: str) -> None:
    """The image server (run in a process of its own, see image_server): a peers.LocalServer over TLS that
    keeps the connection open unless the request asks to close it. Prints its port and its CA, then
    serves until stdin closes."""
    add_code_paths()
    from tests.unit.safe_fetch.peers import LocalServer, tls_material

    body = Path(image_path).read_bytes()
    server_context, client_context = tls_material([HOST])

    def keep_alive_png(handler: Any, _server: LocalServer, _query: dict[str, list[str]]) -> None:
        # Without it, Nagle holds the answer's last segment until the client's delayed ACK (40 ms on Linux)
        # now and then on a kept-alive connection; a closing one is flushed by the close.
        handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        close = handler.headers.get("Connection", "").strip().lower() == "close"
        handler.close_connection = close  # LocalServer closes every connection; HTTP/1.1 need not
        head = ["HTTP/1.1 200 OK", "Content-Type: image/png", f"Content-Length: {len(body)}"]
        head += ["Connection: close"] if close else []
        handler.raw(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    server = LocalServer({"/img.png": keep_alive_png}, tls=server_context)
    authority = ssl.DER_cert_to_PEM_cert(client_context.get_ca_certs(binary_form=True)[0])
    print(json.dumps({"port": server.port, "ca": authority}), flush=True)
    try:
        sys.stdin.read()
    finally:
        server.close()


@contextmanager
def image_server(body: bytes) -> Iterator[tuple[int, str]]:
    """(port, CA in PEM) of the TLS image server, in a process of its own: a server thread in this process
    would take turns with the client for the GIL and charge its work to whichever fetch runs next."""
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as folder:
        path = Path(folder) / "image.png"
        path.write_bytes(body)
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.bench_safe_fetch", "--serve", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            started = json.loads(process.stdout.readline())
            yield int(started["port"]), str(started["ca"])
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# ------------------------------------------------------------------------------------------- the network


class _StandIn(socket.socket):
    """A connected socket that reports the public address it stands for as its peer."""

    stands_for: tuple[str, int] = ("", 0)

    def getpeername(self) -> Any:
        return self.stands_for


class PublicRoutes(httpcore.SyncBackend):
    """The network from here to the server: (host or public address, port) -> a port on 127.0.0.1."""

    def __init__(self, routes: dict[tuple[str, int], int]) -> None:
        self.routes = routes
        self.connections = 0

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        local = self.routes.get((host, port))
        if local is None:
            raise httpcore.ConnectError(f"no route to {host} port {port}")
        stream = super().connect_tcp("127.0.0.1", local, timeout, local_address, socket_options)
        connected = cast(socket.socket, stream.get_extra_info("socket"))
        stand_in = _StandIn(connected.family, connected.type, connected.proto, fileno=connected.detach())
        stand_in.stands_for = (host, port)
        self.connections += 1
        # SyncStream, as the backend made it, around the stand-in
        return cast(Callable[[socket.socket], httpcore.NetworkStream], type(stream))(stand_in)


def client(context: ssl.SSLContext, network: PublicRoutes, limits: httpx.Limits) -> httpx.Client:
    """An httpx.Client whose connections go through `network` (httpx takes no network backend itself)."""
    transport = httpx.HTTPTransport(verify=context, limits=limits, trust_env=False)
    transport._pool = httpcore.ConnectionPool(  # the pool HTTPTransport makes, with the backend
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=network,
    )
    return httpx.Client(transport=transport, trust_env=False, follow_redirects=False)


# ------------------------------------------------------------------------------------------- the run


def main() -> int:
    banner(
        f"3. Safe fetch overhead: fetch_image from an allow-listed https host vs a keep-alive httpx GET,"
        f" same ~1 MB PNG over the same TLS, {ROUNDS} rounds x {CALLS} calls each"
    )
    use_local_environment()
    add_code_paths()
    try:
        from image_pipeline.image_check import verify_image
        from image_pipeline.safe_fetch import FetchPolicy, fetch_image

        from tests.unit.safe_fetch.peers import FAKE_DNS, PUBLIC_A, fake_resolver

        body = noise_png(IMAGE_SIDE)
        digest = hashlib.sha256(body).hexdigest()
        with image_server(body) as (port, authority):
            context = ssl.create_default_context(cadata=authority)
            network = PublicRoutes({(HOST, 443): port, (PUBLIC_A, 443): port})
            url = f"https://{HOST}/img.png?sig=bench"
            policy = FetchPolicy(allowed_hosts=("*.allowed.test",), deadline_seconds=30)
            assert not policy.trusted_origins and FAKE_DNS[HOST] == [PUBLIC_A]
            lookups: list[str] = []

            def resolver(host: str, port: int) -> list[str]:
                lookups.append(host)
                return fake_resolver(host, port)

            keep_alive = client(
                context, network, httpx.Limits(max_connections=1, max_keepalive_connections=1)
            )
            fresh = client(context, network, httpx.Limits(max_connections=1, max_keepalive_connections=0))
            # fetch_image's own client (safe_fetch.fetch.new_client) is made per fetch with the one shared
            # SSL context, no keep-alive: the same here, with this network and this CA.
            fetch_limits = httpx.Limits(max_connections=4, max_keepalive_connections=0)

            def get(http: httpx.Client) -> Callable[[], None]:
                def call() -> None:
                    response = http.get(url)
                    response.raise_for_status()
                    if len(response.content) != len(body):
                        raise RuntimeError("short body")

                return call

            def safe() -> None:
                with client(context, network, fetch_limits) as http:
                    if fetch_image(url, policy, resolver=resolver, client=http).sha256 != digest:
                        raise RuntimeError("fetch_image: wrong bytes")

            def checks_only() -> None:  # what fetch_image adds on top of the transfer, without the network
                verify_image(body, policy.max_pixels)
                hashlib.sha256(body).hexdigest()

            methods: dict[str, Callable[[], None]] = {
                KEEP_ALIVE: get(keep_alive),
                FRESH: get(fresh),
                SAFE: safe,
                CHECKS: checks_only,
            }
            for _ in range(WARM_UP):
                for call in methods.values():
                    call()
            rounds: list[dict[str, list[float]]] = []
            connections: dict[str, int] = dict.fromkeys(methods, 0)
            lookups.clear()
            order = list(methods)
            try:
                for _round in range(ROUNDS):
                    timings: dict[str, list[float]] = {name: [] for name in methods}
                    for index in range(CALLS):  # alternate which goes first: none always pays for the others
                        for name in order if index % 2 == 0 else reversed(order):
                            before = network.connections
                            started = time.perf_counter()
                            methods[name]()
                            timings[name].append(time.perf_counter() - started)
                            connections[name] += network.connections - before
                    rounds.append(timings)
            finally:
                keep_alive.close()
                fresh.close()
    except Exception as error:  # report and fail the run, whatever broke
        print(f"ERROR: {type(error).__name__}: {error}")
        return EXIT_ERROR

    calls = ROUNDS * CALLS
    every = {name: [value for timings in rounds for value in timings[name]] for name in methods}
    print_table(
        f"Latency per fetch (ms, all {calls} calls of each; {len(body) / 1e6:.2f} MB PNG,"
        f" {IMAGE_SIDE}x{IMAGE_SIDE} px, TLS 1.3 from 127.0.0.1, the server in its own process)",
        ["method", "median", "p95", "min", "median vs keep-alive", "p95 vs keep-alive", "TCP connections"],
        [
            (
                name,
                ms(median(values)),
                ms(percentile(values, 95)),
                ms(min(values)),
                ratio(median(values), median(every[KEEP_ALIVE])),
                ratio(percentile(values, 95), percentile(every[KEEP_ALIVE], 95)),
                connections[name] if name != CHECKS else "-",
            )
            for name, values in every.items()
        ],
        notes=[
            f"{WARM_UP} warm-up calls each, then {ROUNDS} rounds of {CALLS} calls each, interleaved;"
            " p95 is nearest-rank",
            f"fetch_image asked the resolver {len(lookups)} times for {calls} fetches (all for {HOST});"
            " the policy has no trusted origin: the address, allow-list, https, port and peer checks all ran",
            "keep-alive: one client and its one TLS connection for every call; a new TLS connection each: the"
            " same client with no keep-alive (a TCP and TLS handshake per call), as fetch_image makes one per"
            " fetch (a connection verified for one host name is never reused for another); TCP connections"
            " are those opened during the measured calls (keep-alive: 0, its warm-up connection served them all)",
            "fetch_image on top of the transfer: a client per fetch (shared SSL context), resolves, checks and"
            " pins the address, checks the peer, streams with a size cap, sniffs the type, verifies the image"
            " with Pillow and hashes it",
            "the last row is that verification and hash alone, on the bytes in memory",
        ],
    )
    per_round = {name: [median(timings[name]) for timings in rounds] for name in methods}
    keep, value = per_round[KEEP_ALIVE], per_round[SAFE]
    each = [safe_ms / floor for safe_ms, floor in zip(value, keep, strict=True)]
    with_checks = median([(k + c) / k for k, c in zip(keep, per_round[CHECKS], strict=True)])
    fresh_with_checks = median(
        [(f + c) / k for k, f, c in zip(keep, per_round[FRESH], per_round[CHECKS], strict=True)]
    )
    print_table(
        f"Per round (ms, median of its {CALLS} calls)",
        ["round", "keep-alive", "new connection", "fetch_image", "checks", "fetch_image / keep-alive"],
        [
            (index + 1, *(ms(per_round[name][index]) for name in methods), f"{each[index]:.2f}x")
            for index in range(ROUNDS)
        ],
        notes=[
            f"keep-alive + checks alone: {with_checks:.2f}x the keep-alive GET; a new TLS connection + checks:"
            f" {fresh_with_checks:.2f}x, the floor of any fetch that keeps its checks and opens a connection"
            " per fetch"
        ],
    )
    summary_rows(
        [
            Row(
                "safe fetch of a 1 MB PNG, allow-listed https host via the resolver, vs a keep-alive GET over TLS",
                f"keep-alive GET {spread(keep, ms, ' ms')}",
                spread(value, ms, " ms"),
                spread(each, lambda r: f"{r:.2f}", "x"),
                f"<= {TARGET}x (GET + checks alone {with_checks:.2f}x; a new TLS connection + checks"
                f" {fresh_with_checks:.2f}x)",
                median(each) <= TARGET,
            )
        ]
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
