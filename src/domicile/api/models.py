"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterBody(_Strict):
    """A person to register: their country decides their home region."""

    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code")
    fields: dict[str, Any] = Field(description="catalog field name -> value")


class Registered(BaseModel):
    """Where a new subject was stored."""

    id: str
    home_region: str


class SubjectBody(BaseModel):
    """A read: the allowed fields, and why the others were withheld."""

    id: str
    home_region: str
    version: int
    fields: dict[str, Any]
    withheld: dict[str, str]


class UpdateBody(_Strict):
    """Fields to set; `null` removes a field."""

    fields: dict[str, Any]


class Updated(BaseModel):
    """The version after an update."""

    id: str
    version: int


class ExportBody(BaseModel):
    """Everything held about a subject."""

    id: str
    home_region: str
    version: int
    catalog_version: str
    created_at: str
    updated_at: str
    fields: dict[str, Any]


class BatchGetBody(_Strict):
    """Many subjects, the same fields, one purpose."""

    ids: list[str] = Field(min_length=1)
    fields: list[str] | None = None
    purpose: str


class BatchItemError(BaseModel):
    """Why one subject of a batch was not returned (a problem document's core)."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class BatchItem(BaseModel):
    """One subject of a batch: either `subject` or `error`."""

    id: str
    subject: SubjectBody | None = None
    error: BatchItemError | None = None


class BatchGetResult(BaseModel):
    """Results in the order of the requested ids."""

    items: list[BatchItem]


class RelocateBody(_Strict):
    """The subject's new country."""

    country: str = Field(min_length=2, max_length=2)


class Relocated(BaseModel):
    """The subject's home region after relocation."""

    id: str
    home_region: str


class RegionBody(BaseModel):
    """A region of the topology."""

    name: str
    jurisdiction: str
    location: str
    subjects: int


class PrincipalBody(BaseModel):
    """A principal as an administrator sees it (never a token)."""

    id: str
    entity: str
    country: str
    roles: list[str]
    created_at: str
    revoked_at: str | None
