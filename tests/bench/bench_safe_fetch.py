"""3. Safe fetch overhead: the same ~1 MB PNG from a local server, image_pipeline.safe_fetch.fetch_image
(trusted-origin policy) against a plain httpx.get, alternated call by call in one run."""

from __future__ import annotations

import hashlib
import io
import random
import sys
import time
from collections.abc import Callable

from tests.bench.common import (
    EXIT_ERROR,
    add_code_paths,
    banner,
    median,
    ms,
    percentile,
    print_table,
    ratio,
    use_local_environment,
)

RUNS = 50
WARM_UP = 3
IMAGE_SIDE = 590  # random RGB pixels barely compress: ~1 MB of PNG
BASELINE = "httpx.get (baseline)"
TRANSFER = "httpx.Client.get, one client"


def noise_png(side: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pixels = random.Random(3).randbytes(side * side * 3)
    Image.frombytes("RGB", (side, side), pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def main() -> int:
    banner(f"3. Safe fetch overhead: fetch_image vs httpx.get, same ~1 MB PNG, N={RUNS} each")
    use_local_environment()
    add_code_paths()
    try:
        import httpx
        from image_pipeline.image_check import verify_image
        from image_pipeline.safe_fetch import FetchPolicy, fetch_image

        from tests.http_fixtures import Reply, image_server

        body = noise_png(IMAGE_SIDE)
        digest = hashlib.sha256(body).hexdigest()
        with image_server() as server:
            url = server.serve("/s/bench.png", Reply(body=body))
            # The emulator's exact origin is trusted (http, loopback); nothing else would be fetched.
            policy = FetchPolicy(
                allowed_hosts=("tempfile.aiquickdraw.com",), trusted_origins=(server.origin,)
            )

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
                "safe_fetch.fetch_image": safe,
                "  of which verify_image + sha256": checks_only,
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
    print_table(
        f"Latency per fetch (ms; {len(body) / 1e6:.2f} MB PNG, {IMAGE_SIDE}x{IMAGE_SIDE} px, 127.0.0.1)",
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
            "the last row is that verification and hash alone, on the bytes in memory",
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
