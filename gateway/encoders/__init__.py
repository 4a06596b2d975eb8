"""The encoder registry: output format name -> encoder class. One line per format.

A route's ``format`` and a request's ``?format=`` are looked up here, and each front door names
its encoders here too (an encoder with ``buffered = True`` answers with one document).
"""

from __future__ import annotations

from gateway.encoders.ai_sdk import AISDKEncoder, AISDKFinishReasonEncoder
from gateway.encoders.base import Encoder
from gateway.encoders.chat_completions import ChatChunkEncoder, CompletionEncoder
from gateway.encoders.messages import MessageEncoder, MessagesStreamEncoder
from gateway.encoders.ndjson import NDJSONEncoder
from gateway.encoders.responses import ResponseDocEncoder, ResponseEventEncoder
from gateway.encoders.text import TextEncoder
from gateway.encoders.tokens import TokensEncoder

ENCODERS: dict[str, type[Encoder]] = {
    TokensEncoder.name: TokensEncoder,
    TextEncoder.name: TextEncoder,
    NDJSONEncoder.name: NDJSONEncoder,
    AISDKEncoder.name: AISDKEncoder,
    AISDKFinishReasonEncoder.name: AISDKFinishReasonEncoder,
    ChatChunkEncoder.name: ChatChunkEncoder,
    CompletionEncoder.name: CompletionEncoder,
    ResponseEventEncoder.name: ResponseEventEncoder,
    ResponseDocEncoder.name: ResponseDocEncoder,
    MessagesStreamEncoder.name: MessagesStreamEncoder,
    MessageEncoder.name: MessageEncoder,
}

__all__ = ["ENCODERS", "Encoder"]
