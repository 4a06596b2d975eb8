"""Conversation rules the providers enforce, checked by the gateway first: a request a provider
would refuse is the client's 400 naming its own field, not the provider's 400 as a 502
(docs/adapters.md, "Requests a provider would refuse").

Tool results paired with their calls (:func:`check_tool_turns`), tool names
(:func:`check_tool_names`), blank text (:func:`blank`), call ids in a narrower alphabet
(:func:`provider_call_id`), stop-sequence counts (:func:`check_stop_count`). Each adapter calls
the ones its provider needs; the object parameter schema is
:func:`gateway.adapters._kit.tool_parameters`.
"""

from __future__ import annotations

import hashlib
import re

from gateway.errors import InvalidRequest
from gateway.request import ChatMessage, Tool


def blank(value: str) -> bool:
    """``value`` is empty or only whitespace: no text, for providers that refuse such blocks."""
    return not value or value.isspace()


def check_tool_turns(messages: tuple[ChatMessage, ...], *, system_apart: bool = False) -> None:
    """Tool results are paired with their calls, as every provider but Ollama insists.

    Each ``tool`` message must answer a call of the assistant message right before its run of
    results (once), and every call must be answered before the conversation goes on. Calls
    left open by the conversation's last message are allowed (the provider decides).
    ``system_apart``: system/developer messages leave the conversation (a separate system
    slot), so one between the calls and their results is no break. Raises
    :class:`InvalidRequest` naming the tool message's ``tool_call_id`` or the unanswered
    call's ``id``.
    """
    open_calls: dict[str, str] = {}  # call id -> its path, for the calls not answered yet
    in_results = False  # right after an assistant message with tool calls, or its results
    for i, m in enumerate(messages):
        role = m.role
        if role == "tool":
            if not in_results or open_calls.pop(m.tool_call_id or "", None) is None:
                raise InvalidRequest(
                    f"messages[{i}].tool_call_id: answers no tool call of the assistant message"
                    " right before the tool results (or answers one twice)"
                )
            continue
        if system_apart and (role == "system" or role == "developer"):
            continue
        if open_calls:
            path = next(iter(open_calls.values()))
            raise InvalidRequest(
                f"{path}: has no tool result (a role tool message with this tool_call_id must"
                f" follow the assistant message, before messages[{i}])"
            )
        in_results = bool(m.tool_calls)
        if in_results:
            open_calls = {
                c.id: f"messages[{i}].tool_calls[{j}].id" for j, c in enumerate(m.tool_calls)
            }


def provider_call_id(call_id: str, bad: re.Pattern[str], limit: int) -> str:
    """``call_id`` as a provider with a narrower id alphabet (``bad`` matches a character
    outside it) and length ``limit`` accepts it.

    Unchanged when it fits. Otherwise the characters outside become ``_`` and a hash of the
    whole id is appended, within ``limit``, so two ids stay apart; the same id always gives the
    same text, so a call and its result still pair. Ids only pair a call with its result in
    one request (the provider's own ids come back in the stream), so nothing maps them back.
    """
    if len(call_id) <= limit and bad.search(call_id) is None:
        return call_id
    digest = hashlib.blake2s(call_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return bad.sub("_", call_id)[: limit - len(digest) - 1] + "_" + digest


def check_tool_names(
    tools: tuple[Tool, ...], pattern: re.Pattern[str], rule: str, provider: str
) -> None:
    """Every tool name matches ``pattern`` (whole), else :class:`InvalidRequest` naming
    ``tools[i].name`` with the provider's ``rule`` in words. Names are not rewritten: the
    model calls tools by name and the client must recognise the name it gets back."""
    for i, tool in enumerate(tools):
        if pattern.fullmatch(tool.name) is None:
            raise InvalidRequest(f"tools[{i}].name: provider '{provider}' takes {rule}")


def check_stop_count(stop: tuple[str, ...], limit: int, provider: str) -> None:
    """At most ``limit`` stop sequences, else :class:`InvalidRequest` naming ``stop``."""
    if len(stop) > limit:
        raise InvalidRequest(f"stop: provider '{provider}' takes at most {limit} stop sequences")
