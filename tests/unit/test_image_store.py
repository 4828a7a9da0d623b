"""S3 adapter: presigned links are SigV4 on the bucket's regional endpoint, and they serve the object.

Under moto only: ``mock_aws`` in-process (``requests`` is intercepted by it), or moto's own server on
127.0.0.1 when ``AWS_ENDPOINT_URL`` points at it, as the local stack runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

BODY = b"\x89PNG\r\n\x1a\n" + b"not really a png, but bytes S3 keeps as they are" * 20
KEY = "images/d231a99a9a9f1dd8f895be1b97be8065/0.png"


def _store_one(bucket: str) -> Any:
    from image_pipeline import wiring

    store = wiring.image_store(bucket)
    store.put(
        KEY,
        BODY,
        content_type="image/png",
        sha256_hex=hashlib.sha256(BODY).hexdigest(),
        metadata={"taskId": "d231a99a9a9f1dd8f895be1b97be8065"},
    )
    return store


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def _assert_sigv4(url: str, region: str, expires: int) -> None:
    query = _query(url)
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256", url
    assert query["X-Amz-Credential"].endswith(f"/{region}/s3/aws4_request")
    assert query["X-Amz-Expires"] == str(expires)
    assert "X-Amz-Signature" in query
    assert "AWSAccessKeyId" not in query and "Signature" not in query  # no SigV2 leftovers


def test_presigned_link_is_sigv4_on_the_regional_virtual_host(aws_stack: Any) -> None:
    import requests

    bucket = aws_stack.images_bucket
    url = _store_one(bucket).presigned_url(KEY, 900)

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        f"{bucket}.s3.us-east-1.amazonaws.com",  # never the legacy global s3.amazonaws.com
        f"/{KEY}",
    )
    _assert_sigv4(url, "us-east-1", 900)
    got = requests.get(url, timeout=10)  # moto answers it in-process
    assert got.status_code == 200
    assert got.content == BODY


@pytest.fixture
def eu_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from image_pipeline import wiring
    from image_pipeline.adapters import aws
    from moto import mock_aws

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    with mock_aws():
        aws.reset_clients()
        wiring.reset()
        bucket = "imagegen-test-imagesbucket-eu"
        boto3.client("s3", region_name="eu-central-1").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
        yield bucket
        aws.reset_clients()
        wiring.reset()


def test_presigned_link_names_the_region_the_bucket_is_in(eu_stack: str) -> None:
    import requests

    url = _store_one(eu_stack).presigned_url(KEY, 300)

    assert urlsplit(url).netloc == f"{eu_stack}.s3.eu-central-1.amazonaws.com"
    _assert_sigv4(url, "eu-central-1", 300)
    got = requests.get(url, timeout=10)
    assert (got.status_code, got.content) == (200, BODY)


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server on loopback, named ``localhost`` like the local stacks name theirs (not an IP)."""
    from image_pipeline import wiring
    from image_pipeline.adapters import aws

    from devstack.common.moto_server import LocalMotoServer

    server = LocalMotoServer().start()
    endpoint = server.endpoint_url.replace("127.0.0.1", "localhost")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    aws.reset_clients()
    wiring.reset()
    try:
        yield endpoint
    finally:
        aws.reset_clients()
        wiring.reset()
        server.stop()


def test_aws_endpoint_url_is_still_honoured(moto_server: str) -> None:
    bucket = "imagegen-test-imagesbucket"
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server).create_bucket(Bucket=bucket)

    url = _store_one(bucket).presigned_url(KEY, 900)

    # Path style on the configured endpoint: a bucket in the host name would not resolve there.
    assert url.startswith(f"{moto_server}/{bucket}/{KEY}?")
    _assert_sigv4(url, "us-east-1", 900)
    got = httpx.get(url, timeout=10, trust_env=False)
    assert (got.status_code, got.content) == (200, BODY)
