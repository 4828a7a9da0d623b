"""S3 and the tasks table as input images need them: presigned uploads, upload records, object versions,
and the presigned GET of exactly one version that the upstream fetches (logic/inputs.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.adapters.aws import client, s3_presigner
from image_pipeline.adapters.dynamo_items import (
    ConditionalTable,
    epoch_seconds,
    from_item,
    is_condition_failure,
    task_key,
    to_item,
)
from image_pipeline.input_records import ObjectVersion, UploadRecord
from image_pipeline.task_records import TaskRecord, iso

MISSING_CODES = ("404", "NoSuchKey", "NotFound", "NoSuchVersion")
# S3 answers a HEAD of a missing key with 403 to a role without s3:ListBucket, as the API's is: it may
# GET uploads/* and images/*, so a 403 there says the key is not there (moto answers 404).
HEAD_MISSING_CODES = (*MISSING_CODES, "403", "AccessDenied")


class InputStore(ConditionalTable):
    """The images bucket's uploads/ and images/ for inputs; upload records beside the tasks
    ("upload#<uploadId>" items, without the owner/createdAt attributes the task index reads)."""

    def __init__(
        self, table_name: str, bucket: str, *, ttl_days: int = 30, s3: Any = None, presigner: Any = None
    ) -> None:
        super().__init__(table_name, ttl_days=ttl_days)
        self.bucket = bucket
        self._s3 = s3 or client("s3")
        self._presigner = presigner

    def _signer(self) -> Any:
        if self._presigner is None:
            self._presigner = s3_presigner()
        return self._presigner

    def presign_upload(self, key: str, content_type: str, size: int, expires_seconds: int) -> str:
        """A PUT that S3 takes only with this Content-Type and exactly this Content-Length (both signed)."""
        url: str = self._signer().generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": size},
            ExpiresIn=expires_seconds,
        )
        return url

    def record_upload(self, upload: UploadRecord, now: datetime, expires_at: datetime) -> None:
        item = {
            "pk": f"upload#{upload.upload_id}",
            "client": upload.owner,
            "contentType": upload.content_type,
            "bytes": upload.size,
            "issuedAt": iso(now),
            "expiresAt": epoch_seconds(expires_at),
        }
        try:
            self._db.put_item(
                TableName=self.table_name, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as error:
            if not is_condition_failure(error):  # 128 random bits do not collide: a retry of this put
                raise

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        found = self._db.get_item(
            TableName=self.table_name, Key=to_item({"pk": f"upload#{upload_id}"}), ConsistentRead=True
        ).get("Item")
        if not found:
            return None
        item = from_item(found)
        checked, problem = item.get("checkedObject"), item.get("checkProblem")
        return UploadRecord(
            upload_id,
            str(item["client"]),
            str(item["contentType"]),
            int(item["bytes"]),
            checked=None if checked is None else str(checked),
            problem=None if problem is None else str(problem),
        )

    def mark_upload_checked(self, upload_id: str, fingerprint: str, problem: str | None) -> None:
        """Remember what the check of the object with this fingerprint found (while the record lasts)."""
        try:
            self._db.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": f"upload#{upload_id}"}),
                UpdateExpression="SET checkedObject = :checked, checkProblem = :problem",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=to_item({":checked": fingerprint, ":problem": problem}),
            )
        except ClientError as error:
            if not is_condition_failure(error):  # the record expired meanwhile: nothing to remember
                raise

    def get_task(self, task_id: str) -> TaskRecord | None:
        found = self._db.get_item(TableName=self.table_name, Key=task_key(task_id), ConsistentRead=True)
        return TaskRecord.from_item(from_item(found["Item"])) if "Item" in found else None

    def current_version(self, key: str) -> ObjectVersion | None:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in HEAD_MISSING_CODES:
                return None
            raise
        version = head.get("VersionId")
        return ObjectVersion(
            key=key,
            version_id=None if version in (None, "null") else str(version),
            content_type=str(head.get("ContentType") or ""),
            size=int(head.get("ContentLength") or 0),
            etag=str(head.get("ETag") or ""),
        )

    def _version_params(self, item: ObjectVersion) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": item.key}
        if item.version_id:
            params["VersionId"] = item.version_id
        return params

    def read_version(self, item: ObjectVersion) -> bytes | None:
        """The object's bytes, or None when it is no longer the object that was found (an unversioned
        bucket keeps one key for every PUT: the ETag tells them apart)."""
        params = self._version_params(item)
        if item.etag:
            params["IfMatch"] = item.etag
        try:
            body: bytes = self._s3.get_object(**params)["Body"].read()
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in ("412", "PreconditionFailed"):
                return None
            raise
        return body

    def presigned_input(self, item: ObjectVersion, expires_seconds: int) -> str:
        url: str = self._signer().generate_presigned_url(
            "get_object", Params=self._version_params(item), ExpiresIn=expires_seconds
        )
        return url
