// Types for gateway-client.js: the browser client for the gateway's token protocol, version 1.

/** One parsed SSE frame (WHATWG rules). */
export interface SSEFrame {
  /** The `event:` field, or "message" when absent. */
  type: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen in the stream so far ("" when none). */
  id: string;
}

/** A malformed or oversized SSE stream (a line or an event's data beyond `maxBufferSize`). */
export class SSEParseError extends Error {
  name: "SSEParseError";
}

/** Incremental SSE parser: feed bytes or strings split anywhere, get complete frames back. */
export class SSEParser {
  constructor(options?: { maxBufferSize?: number });
  /** Longest line or event data, in UTF-16 code units (default 16 Mi). */
  readonly maxBufferSize: number;
  /** The last `retry:` value (ms), or null. */
  retry: number | null;
  /** The last event id seen. */
  lastEventId: string;
  /** The frames completed by this chunk, in order. Throws SSEParseError when over the bound. */
  feed(chunk: Uint8Array | ArrayBuffer | string): SSEFrame[];
  /** End of stream: flushes the UTF-8 decoder; an event without its closing blank line is discarded. */
  end(): SSEFrame[];
  /** Forget all state (buffers, last event id, decoder). */
  reset(): void;
}

export interface CreatedData {
  id: string;
  route: string;
  provider: string;
  model: string | null;
}

export interface ToolCallPiece {
  index: number;
  id?: string;
  name?: string;
  /** A piece of the arguments' JSON text; concatenate per index. */
  arguments: string;
}

export interface ToolCall {
  index: number;
  id: string | null;
  name: string | null;
  /** The whole arguments' JSON text assembled so far. */
  arguments: string;
}

/** Token counts as the provider reports them (absent: unknown); `usage` events merge. */
export interface Usage {
  /** All the input, cached or not. */
  input_tokens?: number;
  /** Everything generated, reasoning included. */
  output_tokens?: number;
  reasoning_tokens?: number;
  /** The input read from the provider's prompt cache (same as `cache_read_input_tokens`). */
  cached_input_tokens?: number;
  cache_read_input_tokens?: number;
  /** The input written to the provider's prompt cache. */
  cache_write_input_tokens?: number;
  /** The stream's cost in US dollars, when the model's price is known. */
  cost_usd?: number;
}

export type EndReason = "stop" | "length" | "tool_calls" | "content_filter" | "other";

export interface EndData {
  reason: EndReason;
  provider_reason?: string;
}

export interface ErrorData {
  code: string;
  message: string;
  retryable: boolean;
  type?: string;
}

/**
 * One token-protocol event; `at` is ms since the request started. A newer gateway may add
 * event types, which `tokenEvents` yields and `streamTokens` passes to `onEvent` only: narrow
 * on `type` before reading `data`.
 */
export type TokenEvent =
  | { type: "created"; data: CreatedData; id: string; at: number }
  | { type: "thinking"; data: Record<string, never>; id: string; at: number }
  | { type: "reasoning"; data: { text: string }; id: string; at: number }
  | { type: "clear"; data: Record<string, never>; id: string; at: number }
  | { type: "delta"; data: { text: string }; id: string; at: number }
  | { type: "tool_call"; data: ToolCallPiece; id: string; at: number }
  | { type: "usage"; data: Usage; id: string; at: number }
  | { type: "end"; data: EndData; id: string; at: number }
  | { type: "error"; data: ErrorData; id: string; at: number };

/** Times in ms since the request started (`startedAt` is its performance.now()). */
export interface Timings {
  startedAt: number;
  /** Response headers received. */
  headers: number | null;
  /** First content event (reasoning, delta or tool call): time to first token. */
  firstToken: number | null;
  /** First visible text (delta). */
  firstText: number | null;
  /** Last event (the terminal one once finished). */
  duration: number | null;
  /** usage.output_tokens when reported (else content events) over firstToken..last event. */
  tokensPerSecond: number | null;
}

export interface StreamSummary {
  requestId: string | null;
  status: number;
  route: string | null;
  provider: string | null;
  model: string | null;
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  usage: Usage | null;
  reason: EndReason | null;
  end: EndData | null;
  events: number;
  contentEvents: number;
  timings: Timings;
}

export type ErrorKind = "http" | "stream" | "truncated" | "protocol" | "network";

/** A failure reported by the gateway or detected by the client. */
export class GatewayError extends Error {
  constructor(message: string, fields?: Partial<Omit<GatewayError, "message" | "name">> & { cause?: unknown });
  name: "GatewayError" | "StreamTruncatedError";
  kind: ErrorKind;
  /** HTTP status (200 for failures after the stream started, 0 when there was no response). */
  status: number;
  /** The gateway's error code (e.g. "rate_limited", "upstream_error", "upstream_truncated"), or the client's. */
  code: string;
  retryable: boolean;
  requestId: string | null;
  /** The Retry-After header of an HTTP error, if any. */
  retryAfter: string | null;
  /** The `error` event's data (kind "stream"). */
  data: ErrorData | null;
  /** What streamed before the failure (streamTokens only). */
  summary: StreamSummary | null;
}

/** The stream ended without a terminal event: code "stream_truncated", kind "truncated". */
export class StreamTruncatedError extends GatewayError {
  name: "StreamTruncatedError";
}

export interface StreamOptions {
  /** Abort the request: the promise rejects with the signal's reason (an AbortError by default). */
  signal?: AbortSignal;
  /**
   * Extra request headers, e.g. { Authorization: "Bearer ..." }: a plain object, a `Headers` or
   * a list of pairs, merged by name (any case) over the defaults (`Content-Type`, `Accept`).
   */
  headers?: HeadersInit;
  /**
   * For a route with `resume` enabled: after a network error, reconnect with
   * `GET <url>/<stream id>` and `Last-Event-ID` until the terminal event (no event twice).
   */
  resume?: boolean;
  /**
   * Failed reconnects in a row before giving up (default 5); a reconnect that brings events
   * starts the count again. A transient status (408, 429, 5xx) on a reconnect counts as a
   * failed one; any other error status is thrown at once.
   */
  maxResumes?: number;
  /** Wait before a reconnect, in ms, doubling after each failed one (default 500). */
  resumeDelay?: number;
  /** Resume this stream (from `resumeLastId`, default 0) instead of POSTing a new request. */
  resumeStreamId?: string;
  resumeLastId?: number;
  /** After each event of a resumable stream: what a page keeps to resume after a reload. */
  onProgress?(streamId: string, lastId: number): void;
}

export interface StreamCallbacks {
  onEvent?(event: TokenEvent, summary: StreamSummary): void;
  onCreated?(data: CreatedData, summary: StreamSummary): void;
  onThinking?(summary: StreamSummary): void;
  onReasoning?(text: string, summary: StreamSummary): void;
  onClear?(summary: StreamSummary): void;
  onDelta?(text: string, summary: StreamSummary): void;
  onToolCall?(piece: ToolCallPiece, call: ToolCall, summary: StreamSummary): void;
  onUsage?(usage: Usage, summary: StreamSummary): void;
  onEnd?(data: EndData, summary: StreamSummary): void;
  /** Called once, just before the promise rejects (aborts included: check err.name). */
  onError?(error: unknown, summary: StreamSummary): void;
}

/**
 * Request body: an object (sent as JSON) or a JSON string; `null` only with `resumeStreamId`
 * (a resume sends no body).
 */
export type RequestBody = null | string | {
  /** `content` is required, except on an assistant message that carries `tool_calls`. */
  messages: Array<{ role: string; content?: string; [key: string]: unknown }>;
  [key: string]: unknown;
};

/** Stream through callbacks; resolves with the summary after the terminal `end` event. */
export function streamTokens(
  url: string,
  body: RequestBody,
  options?: StreamOptions & StreamCallbacks,
): Promise<StreamSummary>;

/** Every event as an async iterator, ending with `end`; an `error` event throws a GatewayError. */
export function tokenEvents(
  url: string,
  body: RequestBody,
  options?: StreamOptions,
): AsyncGenerator<TokenEvent, void, undefined>;
