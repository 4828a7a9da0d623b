"""FetchError: why a fetch was refused or failed (defined with the plain types in fetched_image)."""

from __future__ import annotations

from image_pipeline.fetched_image import RETRYABLE_BY_DEFAULT, FetchError, rebuild_fetch_error

__all__ = ["RETRYABLE_BY_DEFAULT", "FetchError", "rebuild_fetch_error"]
