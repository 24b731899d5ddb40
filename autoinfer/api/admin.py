"""`/v1/keys` and `/v1/secrets`: API keys and encrypted secrets (admin keys only).

The admin role is enforced by `require_key`'s policy (every path under these prefixes needs
`admin`). A key is returned once, when created; a secret's value is never returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from autoinfer.api.auth import require_key
from autoinfer.keys import CreatedKey, KeyRecord, Role
from autoinfer.secrets import SecretInfo

if TYPE_CHECKING:
    from autoinfer.service import AutoInferService

keys_router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(require_key)])
secrets_router = APIRouter(
    prefix="/v1/secrets", tags=["secrets"], dependencies=[Depends(require_key)]
)
router = APIRouter()


class NewKey(BaseModel):
    name: str
    role: Role = Role.READ


class KeyList(BaseModel):
    keys: list[KeyRecord]


class SecretValue(BaseModel):
    value: str = Field(min_length=1, json_schema_extra={"writeOnly": True})


class SecretList(BaseModel):
    secrets: list[SecretInfo]


def _service(request: Request) -> AutoInferService:
    service: AutoInferService = request.app.state.service
    return service


@keys_router.post("", status_code=201, response_model=CreatedKey)
def create_key(request: Request, body: NewKey) -> CreatedKey:
    """A new key with `role`; the response is the only place the key is ever shown."""
    return _service(request).keys.create(body.name, body.role)


@keys_router.get("", response_model=KeyList)
def list_keys(request: Request) -> KeyList:
    """Every key (revoked ones included) with its role and times; never the keys themselves."""
    return KeyList(keys=_service(request).keys.list())


@keys_router.delete("/{ref}", response_model=KeyRecord)
def revoke_key(request: Request, ref: str) -> KeyRecord:
    """Revoke the key with this id, or the live key with this name; it gets 401 from now on."""
    return _service(request).keys.revoke(ref)


@secrets_router.put("/{name}", response_model=SecretInfo)
def set_secret(request: Request, name: str, body: SecretValue) -> SecretInfo:
    """Store or replace secret `name`, encrypted at rest."""
    return _service(request).secrets.set(name, body.value)


@secrets_router.get("", response_model=SecretList)
def list_secrets(request: Request) -> SecretList:
    """Secret names and times; values are never returned by the API."""
    return SecretList(secrets=_service(request).secrets.list())


@secrets_router.delete("/{name}", status_code=204)
def remove_secret(request: Request, name: str) -> Response:
    _service(request).secrets.remove(name)
    return Response(status_code=204)


router.include_router(keys_router)
router.include_router(secrets_router)
