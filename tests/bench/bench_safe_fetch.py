"""3. Safe fetch overhead: the same ~1 MB PNG from a local server, image_pipeline.safe_fetch.fetch_image
(trusted-origin policy) against a bare GET on one reused httpx.Client (the figure's floor) and a plain
httpx.get, alternated call by call in one run."""

from __future__ import annotations

import hashlib
import io
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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
    summary_rows,
    use_local_environment,
)

RUNS = 200
WARM_UP = 3
IMAGE_SIDE = 590  # random RGB pixels barely compress: ~1 MB of PNG
BASELINE = "httpx.get (baseline)"
TRANSFER = "httpx.Client.get, one client"
SAFE = "safe_fetch.fetch_image"
CHECKS = "  of which verify_image + sha256"
TARGET = 1.5  # issue 13: fetch_image <= 1.5x the bare reused GET


def noise_png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = random.Random(3).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# The image server runs in a process of its own: a server thread in this process would take turns with the
# client for the GIL and charge its own work to whichever fetch runs next (a Lambda has no such thread).
SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
body = open(sys.argv[1], "rb").read()
class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: the connection closes after each answer
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextmanager
def image_server_process(body: bytes) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 in its own process answering every GET with `body`; yields its origin."""
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as folder:
        path = Path(folder) / "image.png"
        path.write_bytes(body)
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def main() -> int:
    banner(f"3. Safe fetch overhead: fetch_image vs a reused httpx GET, same ~1 MB PNG, N={RUNS} each")
    use_local_environment()
    add_code_paths()
    try:
        import httpx
        from image_pipeline.image_check import verify_image
        from image_pipeline.safe_fetch import FetchPolicy, fetch_image

        body = noise_png(IMAGE_SIDE)
        digest = hashlib.sha256(body).hexdigest()
        with image_server_process(body) as origin:
            url = f"{origin}/s/bench.png"
            # The emulator's exact origin is trusted (http, loopback); nothing else would be fetched.
            policy = FetchPolicy(allowed_hosts=("tempfile.aiquickdraw.com",), trusted_origins=(origin,))

            def plain() -> None:
                response = httpx.get(url, timeout=30)
                response.raise_for_status()
                if len(response.content) != len(body):
                    raise RuntimeError("httpx.get: short body")

            shared = httpx.Client(timeout=30)

            def transfer_only() -> None:  # one client for every call: no client (SSL context) build per call
                response = shared.get(url)
                response.raise_for_status()
                if len(response.content) != len(body):
                    raise RuntimeError("httpx.Client.get: short body")

            def safe() -> None:
                if fetch_image(url, policy).sha256 != digest:
                    raise RuntimeError("fetch_image: wrong bytes")

            def checks_only() -> None:  # what fetch_image adds on top of the transfer, without the network
                verify_image(body, policy.max_pixels)
                hashlib.sha256(body).hexdigest()

            methods: dict[str, Callable[[], None]] = {
                BASELINE: plain,
                TRANSFER: transfer_only,
                SAFE: safe,
                CHECKS: checks_only,
            }
            timings: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(WARM_UP):
                for call in methods.values():
                    call()
            order = list(methods)
            try:
                for index in range(RUNS):  # alternate which goes first, so none always pays for the others
                    for name in order if index % 2 == 0 else reversed(order):
                        started = time.perf_counter()
                        methods[name]()
                        timings[name].append(time.perf_counter() - started)
            finally:
                shared.close()
    except Exception as error:  # report and fail the run, whatever broke
        print(f"ERROR: {type(error).__name__}: {error}")
        return EXIT_ERROR

    baseline = timings[BASELINE]
    transfer = timings[TRANSFER]
    floor, value, checks = median(transfer), median(timings[SAFE]), median(timings[CHECKS])
    print_table(
        f"Latency per fetch (ms; {len(body) / 1e6:.2f} MB PNG, {IMAGE_SIDE}x{IMAGE_SIDE} px,"
        " from 127.0.0.1, the server in its own process)",
        ["method", "median", "p95", "min", "median vs httpx.get", "p95 vs httpx.get", "median vs one client"],
        [
            (
                name,
                ms(median(values)),
                ms(percentile(values, 95)),
                ms(min(values)),
                ratio(median(values), median(baseline)),
                ratio(percentile(values, 95), percentile(baseline, 95)),
                ratio(median(values), median(transfer)),
            )
            for name, values in timings.items()
        ],
        notes=[
            f"{WARM_UP} warm-up calls each, then {RUNS} measured calls each, interleaved;"
            " p95 is nearest-rank",
            "every call opens a new TCP connection (the server answers HTTP/1.0 and closes)",
            "httpx.get builds a Client per call, and with it an SSL context (CA bundle load), even for"
            " http URLs; fetch_image builds a Client per call too but shares one cached SSL context, so"
            " the one-client row is the fair transfer-only baseline",
            "fetch_image on top of the transfer: resolves, checks and pins the address, streams with a"
            " size cap, sniffs the type, verifies the image with Pillow and hashes it",
            "the last row is that verification and hash alone, on the bytes in memory: with the one-client"
            f" transfer they make a floor of {(floor + checks) / floor:.2f}x that no fetch keeping them can beat",
        ],
    )
    summary_rows(
        [
            Row(
                "safe fetch of a 1 MB PNG vs a bare reused httpx GET",
                f"reused GET {ms(floor)} ms",
                f"{ms(value)} ms",
                f"{value / floor:.2f}x",
                f"<= {TARGET}x (GET + checks alone {(floor + checks) / floor:.2f}x)",
                value / floor <= TARGET,
            )
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
