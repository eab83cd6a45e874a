"""The body of every error answer: what went wrong, the field at fault, and how to fix it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FieldMessage(BaseModel):
    """A message about one field of the request."""

    field: str | None
    message: str


class ErrorResponse(BaseModel):
    """What went wrong, which field is at fault, and how to fix it."""

    detail: str = Field(description="What was wrong and how to fix it.")
    field: str | None = Field(None, description="The request field at fault, if one is.")
    errors: list[FieldMessage] | None = Field(
        None, description="Every field at fault, when several are (validation errors)."
    )
