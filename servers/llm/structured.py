"""Structured answers: one JSON value of a schema from whichever tier answers, validated, asked again once.

Local backends decode under the schema (llama.cpp's grammar, Ollama's ``format``), so even a small model's
reply has the right shape; the validation here still checks it, since Anthropic only gets the schema as an
instruction and a grammar does not enforce every keyword.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import jsonschema

from chiffon.servers.llm.types import ChatResult, Hints, Message
from chiffon.shared.errors import InvalidReply

if TYPE_CHECKING:
    from chiffon.servers.llm.router import Router

log = logging.getLogger(__name__)


async def chat_json(router: Router, messages: list[Message], hints: Hints, schema: dict[str, Any], *,
                    max_tokens: int = 256, temperature: float = 0.0, retries: int = 1) -> tuple[Any, ChatResult]:
    """One JSON value of ``schema``: decoded under it (a grammar on llama.cpp and Ollama, an instruction on
    Anthropic), parsed and validated (JSON Schema 2020-12). A reply that fails is shown back to the model
    with the reason and asked again, ``retries`` times.

    Returns:
        ``(value, result)``: the validated value and the last reply.

    Raises:
        InvalidReply: no reply validated.
        InvalidInput, NoBackendAvailable: as :meth:`~servers.llm.router.Router.chat`.
    """
    validator = jsonschema.Draft202012Validator(schema)
    extra: list[Message] = []
    reason = ""
    for _ in range(retries + 1):
        result = await router.chat(messages + extra, hints, max_tokens=max_tokens, temperature=temperature,
                                   json_schema=schema)
        try:
            value = json.loads(result.text, strict=False)
        except json.JSONDecodeError as exc:
            reason = f"not valid JSON ({exc.msg} at character {exc.pos})"
        else:
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is None:
                return value, result
            where = "/".join(str(p) for p in error.absolute_path) or "the answer"
            reason = f"{where}: {error.message[:200]}"
        log.info("%s: invalid structured answer (%s); asking again", hints.caller, reason)
        extra = [Message(role="assistant", content=result.text[:1000] or "(empty)"),
                 Message(role="user", content=f"That answer was not valid: {reason}. Answer again with exactly "
                                              "one JSON value of the required shape.")]
    raise InvalidReply(hints.caller, retries + 1, reason)
