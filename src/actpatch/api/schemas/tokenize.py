"""POST /tokenize: the tokens of prompts and answers, for live alignment and warnings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .common import MODEL, SPEC_EXAMPLE, AlignmentInfo, Answer, Prompt, Request
from .errors import FieldMessage


class TokenizeRequest(Request):
    """Text to tokenize: any of an experiment's prompts and answers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {k: SPEC_EXAMPLE[k] for k in ("clean_prompt", "corrupt_prompt", "target_token")}
            ]
        }
    )

    clean_prompt: Prompt | None = None
    corrupt_prompt: Prompt | None = None
    target_token: Answer | None = None
    wrong_token: Answer | None = None
    model: str | None = Field(None, description=MODEL)


class TokenizedPrompt(BaseModel):
    """A prompt's tokens (BOS first), and which differ from the other prompt's."""

    ids: list[int]
    tokens: list[str]
    differing: list[int] = Field(
        description="Positions whose token has no equal counterpart in the other prompt."
    )


class TokenizedAnswer(BaseModel):
    """An answer's tokens (no BOS); an answer must be exactly one token."""

    ids: list[int]
    tokens: list[str]
    single_token: bool


class TokenizeResponse(BaseModel):
    """The tokens of each text given, the prompts' alignment, and warnings to show live."""

    model: str
    n_ctx: int = Field(description="The most tokens (BOS included) the model reads.")
    clean_prompt: TokenizedPrompt | None = None
    corrupt_prompt: TokenizedPrompt | None = None
    target_token: TokenizedAnswer | None = None
    wrong_token: TokenizedAnswer | None = None
    alignment: AlignmentInfo | None = Field(None, description="When both prompts are given.")
    warnings: list[FieldMessage] = Field(
        description="Problems a patch would refuse: multi-token answers, prompts too long."
    )
