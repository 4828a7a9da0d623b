"""Signatures are checked by the reference `standardwebhooks` package (PyPI), never by our own code."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from image_pipeline.webhooks import new_secret, parse_secrets, sign
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

Tamper = Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]
BODY = json.dumps({"type": "task.stored", "data": {"taskId": "t-1", "note": "héllo"}}).encode()


def test_a_signed_delivery_verifies_with_standardwebhooks() -> None:
    # Given a fresh secret and a signed body
    secret = new_secret()
    headers = sign([secret], "msg_1", int(time.time()), BODY)
    # Then the reference verifier accepts it and returns the payload
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")


def test_known_answer_of_the_reference_library() -> None:
    # The test vector of the Standard Webhooks reference libraries, signed by their own `sign`
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp, payload = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'
    reference = Webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), payload)
    assert sign([secret], msg_id, timestamp, payload.encode())["webhook-signature"] == reference
    assert reference == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_during_a_rotation_both_secrets_verify() -> None:
    # Given the old and the new secret of a rotation
    old, new = new_secret(), new_secret()
    headers = sign([old, new], "msg_rot", int(time.time()), BODY)
    # Then the signature header carries two signatures and a receiver with either one verifies
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    # and a receiver with an unrelated secret does not
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("body", lambda body, headers: (body.replace(b"t-1", b"t-2"), headers)),
        ("body-appended", lambda body, headers: (body + b" ", headers)),
        ("timestamp", lambda body, headers: (body, {**headers, "webhook-timestamp": _later(headers)})),
        ("id", lambda body, headers: (body, {**headers, "webhook-id": "msg_other"})),
    ],
)
def test_tampering_fails_verification(field: str, change: Tamper) -> None:
    secret = new_secret()
    headers = sign([secret], "msg_t", int(time.time()), BODY)
    body, tampered = change(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, tampered)


def _later(headers: dict[str, str]) -> str:
    return str(int(headers["webhook-timestamp"]) + 1)


def test_timestamp_is_unix_seconds() -> None:
    # A receiver refuses a delivery signed an hour ago: the header is read as unix seconds
    secret = new_secret()
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, sign([secret], "msg_old", int(time.time()) - 3600, BODY))


def test_unpadded_secret_verifies_too() -> None:
    key = bytes(range(32))
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    headers = sign([unpadded], "msg_u", int(time.time()), BODY)
    Webhook(unpadded).verify(BODY, headers)
    Webhook(key).verify(BODY, headers)


def test_new_secret_form() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 32
        assert parse_secrets(secret) == (secret,)


def test_parse_secrets_separators_and_duplicates() -> None:
    a, b = new_secret(), new_secret()
    assert parse_secrets(f"  {a}, {b}\n{a} ") == (a, b)
    assert parse_secrets(f"{a},{b}") == (a, b)


SECRET_LOOKING = "whsec_" + "A" * 8  # 6 bytes: too short, must not appear in any message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no signing secret"),
        (" , \n", "no signing secret"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret 1 of 1 does not start with 'whsec_'"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_%%%notbase64%%%", "secret 2 of 2 is not valid base64"),
        (SECRET_LOOKING, "secret 1 of 1 decodes to 6 bytes; 24 to 64 are required"),
        ("whsec_", "secret 1 of 1 decodes to 0 bytes"),
    ],
)
def test_parse_secrets_says_what_is_wrong_without_echoing(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_secrets(text)
    for secret in text.replace(",", " ").split():
        if secret != "whsec_":
            assert secret.removeprefix("whsec_") not in str(err.value)


def test_sign_refuses_misuse() -> None:
    secret = new_secret()
    with pytest.raises(TypeError):
        sign(secret, "msg", 1, BODY)  # one string is not a list of secrets
    with pytest.raises(ValueError, match="at least one"):
        sign([], "msg", 1, BODY)
    with pytest.raises(ValueError, match="does not start with"):
        sign(["not-a-secret"], "msg", 1, BODY)
    for bad_id in ("", "two words", "line\nbreak"):
        with pytest.raises(ValueError, match="msg_id"):
            sign([secret], bad_id, 1, BODY)
    with pytest.raises(ValueError, match="timestamp"):
        sign([secret], "msg", -1, BODY)
