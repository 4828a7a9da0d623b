"""S3 adapter: stored images and the short-lived links clients download them from."""

from __future__ import annotations

import base64
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import AwsAdapter, client, s3_presigner
from image_pipeline.errors import ImageDeletionError
from image_pipeline.task_records import image_key

__all__ = ["ImageStore", "image_key"]


class ImageStore(AwsAdapter):
    def __init__(self, bucket: str, *, s3: Any = None, presigner: Any = None) -> None:
        self.bucket = bucket
        self._s3 = s3 or client("s3")
        # Links are signed by their own client, SigV4 on the regional endpoint (see s3_presigner),
        # built on first use: the downloader only stores.
        self._presigner = presigner

    def put(
        self, key: str, body: bytes, *, content_type: str, sha256_hex: str, metadata: dict[str, str]
    ) -> str | None:
        """Store the image unless the key already holds one: the version written ("null" in a bucket
        without versioning), or None when S3 refused (If-None-Match) and nothing was written.

        A task's image is one file of the upstream under one key: a second upload of it (a run that
        crashed between its upload and its record, or a job sent twice and run in two batches at once)
        would only add a version of the same bytes.
        """
        try:
            # S3 checks ChecksumSHA256 against what it received: a corrupted upload fails, not stored.
            written = self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256_hex)).decode(),
                Metadata={"sha256": sha256_hex, **metadata},
                IfNoneMatch="*",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return None
            raise  # 409 ConditionalRequestConflict (two uploads at once) too: the job is retried
        return str(written.get("VersionId") or "null")

    def delete_version(self, key: str, version_id: str) -> None:
        """Delete exactly one version: what a download wrote for a task that no longer takes it."""
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
        except ClientError as error:  # deleted already (by DELETE /tasks, which listed it)
            if error.response.get("Error", {}).get("Code") not in ("NoSuchVersion", "NoSuchKey"):
                raise

    def presigned_url(self, key: str, expires_seconds: int) -> str:
        if self._presigner is None:
            self._presigner = s3_presigner()
        url: str = self._presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_seconds
        )
        return url

    def delete_task_images(self, task_id: str) -> int:
        """Every version (and delete marker) under the task's prefix: the versioned bucket keeps
        nothing of it. Returns how many versions were deleted."""
        prefix = image_key(task_id, 0, "x").rsplit("/", 1)[0] + "/"
        deleted = 0
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            versions = [
                {"Key": entry["Key"], "VersionId": entry["VersionId"]}
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if not versions:
                continue
            answer = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": versions, "Quiet": True})
            if answer.get("Errors"):
                problems = "; ".join(f"{e.get('Key')}: {e.get('Code')}" for e in answer["Errors"])
                raise ImageDeletionError(f"could not delete every stored image of {task_id}: {problems}")
            deleted += len(versions)
        return deleted
