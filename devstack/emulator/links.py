"""Result files and links: download-url (both forms), presigned-style links, and GETs of ``/s/<name>``.

4o results are ``<taskId>_<index>_<unixSec>_<4 digits>.png``; a Flux Kontext task's are
``<taskId>_0_...`` (its ``resultImageUrl``) and ``<taskId>_origin_...`` (``originImageUrl``), ``.jpg``
or ``.png``; a Market task's ``<taskId>_<index>_...`` in ``.png``, ``.jpg`` or ``.webp``. Flux and the
Market have no download-url of their own: the 4o one answers "record is null" for their tasks, while the
common one (any file the platform made) serves all three.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from .images import padded_chunks, padded_length
from .model import ApiReply, FileReply, ResultImage, Task, envelope
from .state import CoreState

NAME_RE = re.compile(r"^(?P<task>[0-9a-f]{32})_(?:\d+|origin)_\d+_\d{4}\.(?:png|jpg|webp)$")
MAX_LINKS = 20_000
SLOW_FIRST_TRICKLE_SECONDS = 30.0  # longer than any sane download deadline: the fetch times out
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    b"<h1>Bad Gateway</h1><p>The CDN could not reach the origin (kie 4o emulator html fault).</p>"
    b"</body></html>"
)


class LinkMixin(CoreState):
    # ----------------------------------------------------------------- API: download links
    def _task_for_url(self, url: Any) -> tuple[Task | None, ResultImage | None]:
        if not isinstance(url, str):
            return None, None
        match = NAME_RE.match(urlsplit(url).path.rsplit("/", 1)[-1])
        if not match:
            return None, None
        with self._lock:
            task = self._tasks.get(match["task"])
        if task is None:
            return None, None
        image = next((i for i in task.images if i.name == match.group(0)), None)
        return task, image

    def download_url(self, body: Any, *, generic: bool) -> ApiReply:
        run = self._faults_for(None)
        if not isinstance(body, dict):
            return self._error(400, "Format Error: the request body must be a JSON object", run)
        quick = not generic and "url" not in body and "imageUrl" in body
        url = body.get("imageUrl") if quick else body.get("url")
        if not url:
            return self._error(422, f"{'imageUrl' if quick else 'url'}: This field is required", run)
        task, image = self._task_for_url(url)
        if not generic and not quick:
            task_id = body.get("taskId")
            if not task_id:
                return self._error(422, "taskId: This field is required", run)
            with self._lock:
                task = self._tasks.get(str(task_id))
            if task is not None:
                image = next((i for i in task.images if i.url == url or url.endswith("/s/" + i.name)), None)
        if task is None or (task.api != "4o" and not generic):
            return self._error(422, "record is null", run)
        faults = self._faults_for(task)
        if time.time() - task.created_at > self.config.retention_seconds:
            return self._error(422, "Temporarily supports records within 14 days", faults)
        if task.status != "SUCCESS":
            return self._error(422, "record status is not success", faults)
        if not task.images:
            return self._error(422, "record result data is blank", faults)
        if image is None:
            return self._error(
                451, "Failed to fetch the image: the url is not a result of this record", faults
            )
        link = self.mint_link(image.name)
        form = faults.download_form
        if form == "auto":
            form = "quickstart" if quick else "reference"
        data: Any = {"downloadUrl": link} if form == "quickstart" and not generic else link
        return ApiReply(200, envelope(200, "success", data))

    def mint_link(self, name: str) -> str:
        """A presigned-style URL for a result file, valid ``link_ttl_seconds``."""
        now = time.time()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        ttl = self.config.link_ttl_seconds
        with self._lock:
            self._link_counter += 1
            message = f"{name}\n{amz_date}\n{self._link_counter}".encode()
            signature = hmac.new(self._secret, message, hashlib.sha256).hexdigest()
            self._links[signature] = (name, now + ttl)
            while len(self._links) > MAX_LINKS:
                self._links.popitem(last=False)
        credential = quote(f"EMULATORKEY/{amz_date[:8]}/us-east-1/s3/aws4_request", safe="")
        return (
            f"{self.public_base}/s/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={math.ceil(ttl)}&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )

    # ----------------------------------------------------------------- files
    def file(self, name: str, query: dict[str, str]) -> FileReply:
        """What a GET on ``/s/<name>`` answers (S3-style XML errors for missing/expired)."""
        match = NAME_RE.match(name)
        with self._lock:
            task = self._tasks.get(match["task"]) if match else None
        image = next((i for i in task.images if i.name == name), None) if task else None
        if task is None or image is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        faults = self._faults_for(task)
        now = time.time()
        if now - task.created_at > self.config.retention_seconds:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if "X-Amz-Signature" in query:
            with self._lock:
                minted = self._links.get(query["X-Amz-Signature"])
            if minted is None or minted[0] != name:
                return _s3_error(
                    403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
                )
            if faults.expired or now > minted[1]:
                return _s3_error(403, "AccessDenied", "Request has expired")
        elif faults.expired or faults.stale_links or now > (task.completed_at or now) + self._url_ttl(image):
            return _s3_error(403, "AccessDenied", "Request has expired")
        with self._lock:
            earlier_gets = self._image_gets.get(name, 0)
            self._image_gets[name] = earlier_gets + 1
        if earlier_gets < faults.image_5xx:
            return _s3_error(503, "SlowDown", "Please reduce your request rate.")

        applied: list[str] = []
        if faults.html:
            applied.append("html")
            body_length = len(HTML_PAGE)

            def chunks() -> Iterator[bytes]:
                yield HTML_PAGE
        else:
            data = task.render(image.index)
            if faults.oversize:
                applied.append("oversize")
                body_length = padded_length(data, faults.oversize)

                def chunks() -> Iterator[bytes]:
                    yield from padded_chunks(data, faults.oversize)
            else:
                body_length = len(data)

                def chunks() -> Iterator[bytes]:
                    yield data

        declared = body_length
        sent = body_length
        if faults.truncate:
            applied.append("truncate")
            sent = body_length // 2
            declared = body_length
        trickle = faults.trickle
        if earlier_gets < faults.slow_first:
            trickle = SLOW_FIRST_TRICKLE_SECONDS
        if trickle:
            applied.append("trickle")
        return FileReply(
            status=200,
            content_type=image.content_type,
            chunks=chunks,
            length=sent,
            declared_length=declared,
            trickle_seconds=trickle,
            applied=tuple(applied),
            task_id=task.task_id,
            index=image.index,
        )

    def _url_ttl(self, image: ResultImage) -> float:
        """How long a result URL works after completion (Flux's origin URL: 10 minutes)."""
        return self.config.effective_result_ttl if image.ttl_seconds is None else image.ttl_seconds

    def record_served(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._served.append(entry)

    def amend_served(self, entry: dict[str, Any], **changes: Any) -> None:
        """Correct a serve recorded before its last byte went out, when that byte did not."""
        with self._lock:
            entry.update(changes)


def _s3_error(status: int, code: str, message: str) -> FileReply:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield body

    return FileReply(status, "application/xml", chunks, len(body), len(body), applied=(code,))
