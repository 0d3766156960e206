"""The court API: ``CourtClient`` (httpx) and the PDPJ-like simulator used in demo mode and tests."""

from engine.court.client import (
    CourtAuthError,
    CourtClient,
    CourtError,
    CourtNotFound,
    CourtTransferError,
    CourtUnavailable,
    DocumentStream,
    RetryPolicy,
    parse_retry_after,
)

__all__ = [
    "CourtAuthError",
    "CourtClient",
    "CourtError",
    "CourtNotFound",
    "CourtTransferError",
    "CourtUnavailable",
    "DocumentStream",
    "RetryPolicy",
    "parse_retry_after",
]
