"""The AI SDK's request shape on a route's own path, mapped to the common request. Pure.

``useChat``'s ``DefaultChatTransport`` sends ``{id, messages: [UIMessage], trigger, messageId}``
with ``parts`` instead of ``content``; :func:`from_ui_messages` maps it to the common request body
(contract section 3). Its answer side is the ``ai-sdk`` encoder (:mod:`gateway.encoders.ai_sdk`).
"""

from __future__ import annotations

from typing import Any

from gateway.jsonutil import dumps_str


def from_ui_messages(body: Any) -> Any:
    """Map a ``DefaultChatTransport`` body (UIMessages with ``parts``) to the common request.

    Bodies already in the common shape (every message has ``content``) come back unchanged.
    Text parts are joined into ``content``; an assistant message's tool parts with an input
    become ``tool_calls``, and those with a result (an ``output``, a failed call's
    ``errorText``, a denial) also a following ``tool`` message. The
    SDK's ``id``, ``trigger`` and ``messageId`` fields are dropped. Invalid shapes are left for
    :func:`gateway.request.parse_request` to report.
    """
    if not isinstance(body, dict):
        return body
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    for m in messages:  # a loop, not ``any()`` over a generator: every request comes here
        if isinstance(m, dict) and "parts" in m and "content" not in m:
            break
    else:
        return body  # the common shape (the usual case): unchanged
    out: list[Any] = []
    for message in messages:
        if isinstance(message, dict) and "parts" in message and "content" not in message:
            out.extend(_from_ui_message(message))
        else:
            out.append(message)
    rest = {k: v for k, v in body.items() if k not in ("id", "trigger", "messageId")}
    return {**rest, "messages": out}


def _from_ui_message(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts = message.get("parts")
    if not isinstance(parts, list):
        return [message]  # let parse_request name the problem
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = str(part.get("type", ""))
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif (kind.startswith("tool-") or kind == "dynamic-tool") and "input" in part:
            name = part.get("toolName") or kind[len("tool-") :]
            call_id = str(part.get("toolCallId", ""))
            calls.append({"id": call_id, "name": name, "arguments": dumps_str(part["input"])})
            text = _tool_result(part)
            if text is not None:
                results.append({"role": "tool", "tool_call_id": call_id, "content": text})
    common: dict[str, Any] = {"role": message.get("role"), "content": "".join(texts)}
    if calls and message.get("role") == "assistant":
        common["tool_calls"] = calls
        return [common, *results]
    return [common]


def _tool_result(part: dict[str, Any]) -> str | None:
    """A tool part's result as the text of a ``tool`` message, or ``None`` for none yet.

    As the AI SDK's ``convertToModelMessages``: ``output`` (JSON unless a string), a failed call
    its ``errorText``, a denied one its approval's reason (or "Tool call execution denied.").
    Every call the model made then has its result, as providers require.
    """
    state = part.get("state")
    if "output" in part and state != "output-error":
        content = part["output"]
        return content if isinstance(content, str) else dumps_str(content)
    if state == "output-error":
        error = part.get("errorText")
        return error if isinstance(error, str) else dumps_str(error)
    if state == "output-denied":
        approval = part.get("approval")
        reason = approval.get("reason") if isinstance(approval, dict) else None
        return reason if isinstance(reason, str) else "Tool call execution denied."
    return None
