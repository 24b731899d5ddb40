"""Every error answers `{"error": {"code": ..., "message": ...}}` with a proper status; no traces."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from autoinfer.errors import AuthError, AutoInferError
from autoinfer.jobs.spec import describe_validation_error

log = logging.getLogger("autoinfer.api")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AutoInferError)
    async def _ours(request: Request, error: AutoInferError) -> JSONResponse:
        status = 401 if isinstance(error, AuthError) else error.status_code
        return error_response(status, error.code, _redact(request, str(error)))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        parts = []
        for item in error.errors():
            loc = [str(p) for p in item.get("loc", ()) if p != "body"]
            parts.append(f"{'.'.join(loc) or 'body'}: {item.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", _redact(request, "; ".join(parts)))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, _redact(request, str(error.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal_error", "internal error; see the service log")


def _redact(request: Request, message: str) -> str:
    """`message` with the service's known secret values replaced by `***`."""
    redact = getattr(request.app.state.service, "redact", None)
    return redact(message) if redact is not None else message


__all__ = ["describe_validation_error", "error_response", "install_error_handlers"]
