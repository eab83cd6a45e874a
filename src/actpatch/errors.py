"""Exceptions that tell the user what was wrong and how to fix it.

Every error a user can cause is an `ActpatchError`: its message is written for a person, and
`field` names the input at fault (the CLI prints the message; the API answers 4xx with both).
"""

from __future__ import annotations


class ActpatchError(Exception):
    """An error in the user's input or set-up, with a message that says how to fix it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class InputError(ActpatchError, ValueError):
    """A prompt, answer, layer, head, component, metric or direction that cannot be used."""


class ModelUnavailableError(ActpatchError):
    """The model's weights cannot be had here (no network and no local copy)."""


class CancelledError(ActpatchError):
    """A sweep was cancelled by its caller before it finished."""
