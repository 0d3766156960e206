"""Errors raised by engine services.

Every error a user or a script can act on derives from ``EngineError``; each class knows its HTTP status
and a stable machine code, carries its data as fields, and has a message a person can act on. The REST
layer and the dashboard each translate them in exactly one place.

    EngineError                      500  internal
    ├── ConfigurationError           500  configuration   (bad or missing setting; carries `variable`)
    ├── NotFound                     404  not_found       (carries `entity`, `key`)
    ├── AuthenticationFailed         401  unauthenticated
    ├── PermissionDenied             403  forbidden       (carries `action`)
    ├── Conflict                     409  conflict        (carries `current`, `attempted`)
    ├── ValidationFailed             422  validation_failed (carries `errors`: [{field, message}])
    │   └── BadRequest               400  bad_request
    ├── PayloadTooLarge              413  payload_too_large (carries `size`, `limit`)
    ├── LimitExceeded                429  rate_limited    (carries `retry_after` seconds)
    ├── IntegrityError               422  integrity_failed (tampered or corrupt stored data)
    └── ExternalServiceError         502  upstream_failed (court API, S3, webhooks target)
"""

from __future__ import annotations

from typing import Any

# PostgreSQL keeps no NUL in text or JSONB: inputs holding one are refused at each door with this message.
NUL_CHARACTER = "contém o caractere nulo (U+0000)"


class EngineError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data", {})
        if name in data:
            return data[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of an error answer: ``{"error": CODE, "detail": message, ...data}``."""
        body: dict[str, Any] = {"error": self.code, "detail": self.message}
        body.update({k: v for k, v in self.data.items() if _jsonable(v)})
        return body


class ConfigurationError(EngineError):
    code = "configuration"


class NotFound(EngineError):
    status = 404
    code = "not_found"


class AuthenticationFailed(EngineError):
    status = 401
    code = "unauthenticated"


class PermissionDenied(EngineError):
    status = 403
    code = "forbidden"


class Conflict(EngineError):
    status = 409
    code = "conflict"


class ValidationFailed(EngineError):
    status = 422
    code = "validation_failed"


class BadRequest(ValidationFailed):
    status = 400
    code = "bad_request"


class PayloadTooLarge(EngineError):
    status = 413
    code = "payload_too_large"


class LimitExceeded(EngineError):
    status = 429
    code = "rate_limited"


class IntegrityError(EngineError):
    status = 422
    code = "integrity_failed"


class ExternalServiceError(EngineError):
    status = 502
    code = "upstream_failed"


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | dict | type(None))
