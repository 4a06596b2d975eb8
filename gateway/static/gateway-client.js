// The gateway's browser client for the token protocol, version 1 (docs/protocol.md).
//
// An ES module with no dependencies and no build step: import it from the gateway itself
// (`/static/gateway-client.js`) or copy it into your app. Types: gateway-client.d.ts.
//
//   import { streamTokens } from "/static/gateway-client.js";
//   const summary = await streamTokens("/v1/stream/demo",
//     { messages: [{ role: "user", content: "Hi" }] },
//     { onDelta: (text) => (output.textContent += text), signal: controller.signal });
//
// Design, and why:
// - `fetch` with POST and `response.body.getReader()`, the way the seed blog post streams, but
//   the bytes go through a real incremental SSE parser (`SSEParser`, the WHATWG rules): a
//   marker searched for in raw chunks (the seed's `chunk.indexOf(END)`) misses a marker split
//   across two reads and fires on the same words inside the model's text.
// - A stream is a success only when its terminal `end` event arrived. A connection that closes
//   without `end` or `error` rejects with `StreamTruncatedError`: a dead stream never looks
//   like success.
// - Aborting (`signal`) or leaving the iterator early closes the connection, which is what makes
//   the gateway cancel the upstream request.

const LF = 10;
const CR = 13;

/** A malformed or oversized SSE stream. */
export class SSEParseError extends Error {
  constructor(message) {
    super(message);
    this.name = "SSEParseError";
  }
}

/**
 * Incremental Server-Sent Events parser (WHATWG HTML "event stream interpretation").
 *
 * `feed(chunk)` takes bytes (Uint8Array / ArrayBuffer) or an already decoded string and
 * returns the events completed by it, in order: `{type, data, id}` where `type` defaults to
 * "message", `data` joins multi-line `data:` fields with "\n", and `id` is the last event id
 * seen so far. Handles any chunk split: inside a line, a CRLF pair (CR at the end of one chunk
 * and LF at the start of the next), or a UTF-8 character (bytes are decoded in stream mode).
 * CR, LF and CRLF all end a line; nothing else does (not U+2028). Comments (`: ping`) are
 * ignored, a leading byte-order mark is dropped, `retry:` is kept in `.retry`.
 * `end()` flushes the decoder and discards an incomplete event (the spec's rule at EOF).
 * Throws `SSEParseError` when a line or an event's data grows beyond `maxBufferSize`.
 */
export class SSEParser {
  constructor({ maxBufferSize = 16 * 1024 * 1024 } = {}) {
    this.maxBufferSize = maxBufferSize;
    this.retry = null;
    this.reset();
  }

  /** Forget everything (buffers, last event id, decoder state). */
  reset() {
    this._decoder = new TextDecoder("utf-8"); // ignoreBOM: false drops one leading BOM
    this._started = false;
    this._line = "";
    this._skipLF = false;
    this._data = "";
    this._event = "";
    this.lastEventId = "";
  }

  feed(chunk) {
    let text;
    if (typeof chunk === "string") {
      text = chunk;
      if (!this._started && text.length > 0) {
        this._started = true;
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      }
    } else {
      this._started = true;
      text = this._decoder.decode(chunk, { stream: true });
    }
    const out = [];
    this._scan(text, out);
    return out;
  }

  end() {
    const out = [];
    this._scan(this._decoder.decode(), out);
    // An event without its closing blank line is incomplete: discarded, never dispatched.
    this._line = "";
    this._data = "";
    this._event = "";
    this._skipLF = false;
    return out;
  }

  _scan(text, out) {
    let i = 0;
    if (this._skipLF && text.length > 0) {
      // The previous chunk ended with CR: an LF here is the second half of that CRLF.
      if (text.charCodeAt(0) === LF) i = 1;
      this._skipLF = false;
    }
    let start = i;
    const n = text.length;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== LF && c !== CR) {
        i++;
        continue;
      }
      const line = this._line.length ? this._line + text.slice(start, i) : text.slice(start, i);
      this._line = "";
      this._processLine(line, out);
      if (c === CR) {
        if (i + 1 < n) {
          if (text.charCodeAt(i + 1) === LF) i++;
        } else {
          this._skipLF = true;
        }
      }
      i++;
      start = i;
    }
    if (start < n) {
      this._line += text.slice(start);
      if (this._line.length > this.maxBufferSize) {
        throw new SSEParseError(`SSE line longer than ${this.maxBufferSize} characters`);
      }
    }
  }

  _processLine(line, out) {
    if (line.length === 0) {
      this._dispatch(out);
      return;
    }
    if (line.charCodeAt(0) === 58 /* ":" */) return; // a comment, e.g. the ": ping" heartbeat
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(line.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1);
    }
    switch (field) {
      case "event":
        this._event = value;
        break;
      case "data":
        this._data += value + "\n";
        if (this._data.length > this.maxBufferSize) {
          throw new SSEParseError(`SSE event data longer than ${this.maxBufferSize} characters`);
        }
        break;
      case "id":
        if (!value.includes("\0")) this.lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = parseInt(value, 10);
        break;
      default: // unknown fields are ignored
    }
  }

  _dispatch(out) {
    if (this._data.length === 0) {
      this._event = "";
      return;
    }
    out.push({
      type: this._event || "message",
      data: this._data.slice(0, -1),
      id: this.lastEventId,
    });
    this._data = "";
    this._event = "";
  }
}

/**
 * A failure reported by the gateway or detected by the client.
 *
 * `kind` says where: "http" (an error status before the stream; `status`, and `code` and
 * `message` from the JSON body), "stream" (a terminal `error` event; `code`, `message`,
 * `retryable` from its data), "truncated" (the connection ended without a terminal event),
 * "protocol" (not a token-protocol stream), "network" (no response at all).
 * `summary` holds what had streamed before the failure (streamTokens only).
 */
export class GatewayError extends Error {
  constructor(message, fields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = "GatewayError";
    this.kind = fields.kind ?? "stream";
    this.status = fields.status ?? 0;
    this.code = fields.code ?? "error";
    this.retryable = fields.retryable ?? false;
    this.requestId = fields.requestId ?? null;
    this.retryAfter = fields.retryAfter ?? null;
    this.data = fields.data ?? null;
    this.summary = null;
  }
}

/** The stream ended (connection closed or failed) before its terminal `end` or `error` event. */
export class StreamTruncatedError extends GatewayError {
  constructor(message, fields = {}) {
    super(message, { retryable: true, ...fields, kind: "truncated", code: "stream_truncated" });
    this.name = "StreamTruncatedError";
  }
}

const now = () => (typeof performance !== "undefined" ? performance.now() : Date.now());

function abortReason(signal) {
  return signal.reason ?? new DOMException("The operation was aborted.", "AbortError");
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

async function httpError(response, requestId) {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const text = await response.text();
    try {
      const doc = JSON.parse(text);
      if (doc && typeof doc.error === "object" && doc.error !== null) {
        code = String(doc.error.code ?? code);
        message = String(doc.error.message ?? message);
      }
    } catch {
      if (text) message = text.slice(0, 200);
    }
  } catch {
    // the body could not be read: status alone must do
  }
  return new GatewayError(message, {
    kind: "http",
    status: response.status,
    code,
    retryable: RETRYABLE_STATUS.has(response.status),
    requestId,
    retryAfter: response.headers.get("Retry-After"),
  });
}

/**
 * The request's headers: the caller's (a plain object, a `Headers` or a list of pairs, merged
 * by name whatever its case) over the defaults. A POST sends JSON; a resume (`lastEventId`
 * set, contract section 12) is a GET carrying `Last-Event-ID`.
 */
function requestHeaders(extra, lastEventId) {
  const headers = new Headers(extra ?? {});
  if (!headers.has("Accept")) headers.set("Accept", "text/event-stream");
  if (lastEventId === null) {
    if (!headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  } else {
    headers.set("Last-Event-ID", String(lastEventId));
  }
  return headers;
}

/**
 * Read what is left of a finished body (normally nothing) so the connection ends cleanly and
 * can be reused; cancel it after `ms`. Runs in the background: the caller already has its
 * terminal event and never waits for this, even from a server that keeps the body open.
 */
async function drain(reader, ms) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    for (;;) {
      const r = await Promise.race([reader.read(), timeout.then(() => ({ done: true }))]);
      if (r.done) break;
    }
  } catch {
    // already closed: nothing to drain
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
  }
}

/**
 * The shared engine: POST, check the response, parse SSE, yield every token-protocol event
 * (terminal `error` included) as `{type, data, id, at}` where `at` is ms since the call's first
 * request started. Fills `meta` (requestId, status, startedAt, headersAt; a resume keeps the
 * first request's startedAt and headersAt). Ends after the terminal event; throws on HTTP
 * errors, truncation (a 204 included: the stream ended before this call saw its terminal
 * event), bad frames and aborts, an abort also between two events of one network chunk.
 * Closes the connection on every early exit.
 */
async function* openStream(url, body, options, meta, lastEventId = null) {
  const outer = options.signal;
  if (outer?.aborted) throw abortReason(outer);
  const controller = new AbortController();
  const onAbort = () => controller.abort(abortReason(outer));
  outer?.addEventListener("abort", onAbort, { once: true });
  meta.startedAt ??= now(); // a resume keeps the clock of the call's first request
  let reader = null;
  let finished = false;
  try {
    let response;
    try {
      // A resume (lastEventId set) is a GET of <route path>/<stream id> (contract section 12).
      response = await fetch(url, {
        method: lastEventId === null ? "POST" : "GET",
        headers: requestHeaders(options.headers, lastEventId),
        ...(lastEventId === null ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (err) {
      if (outer?.aborted) throw abortReason(outer);
      throw new GatewayError(`network error: ${err?.message ?? err}`, {
        kind: "network",
        code: "network_error",
        retryable: true,
        cause: err,
      });
    }
    meta.headersAt ??= now() - meta.startedAt;
    meta.status = response.status;
    meta.requestId = response.headers.get("X-Request-Id");
    if (!response.ok) {
      const err = await httpError(response, meta.requestId);
      if (outer?.aborted) throw abortReason(outer); // aborted while reading the error body
      throw err;
    }
    if (response.status === 204) {
      // A resume from the terminal event (or beyond): nothing more will come, and this call
      // never saw the terminal event. Not retryable: asking again gets the same 204.
      throw new StreamTruncatedError("the stream had already ended (204) before its terminal event was received", {
        status: response.status,
        requestId: meta.requestId,
        retryable: false,
      });
    }
    const ctype = response.headers.get("Content-Type") ?? "";
    if (!ctype.toLowerCase().includes("text/event-stream") || response.body === null) {
      throw new GatewayError(
        `expected a token-protocol event stream, got '${ctype}' (use the route's tokens format, e.g. ?format=tokens)`,
        { kind: "protocol", status: response.status, code: "unexpected_content_type", requestId: meta.requestId },
      );
    }
    reader = response.body.getReader();
    const parser = new SSEParser();
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (outer?.aborted) throw abortReason(outer);
        throw new StreamTruncatedError(`the connection failed mid-stream: ${err?.message ?? err}`, {
          status: response.status,
          requestId: meta.requestId,
          cause: err,
        });
      }
      let frames;
      try {
        frames = chunk.done ? parser.end() : parser.feed(chunk.value);
      } catch (err) {
        throw new GatewayError(err.message, { kind: "protocol", code: "client_protocol", requestId: meta.requestId });
      }
      for (const frame of frames) {
        // The consumer may abort while handling the previous event of this same chunk.
        if (outer?.aborted) throw abortReason(outer);
        if (frame.type === "message") continue; // the token protocol always names its events
        let data;
        try {
          data = JSON.parse(frame.data);
        } catch {
          throw new GatewayError(`event '${frame.type}' carries invalid JSON`, {
            kind: "protocol",
            code: "client_protocol",
            requestId: meta.requestId,
          });
        }
        const terminal = frame.type === "end" || frame.type === "error";
        if (terminal) finished = true;
        yield { type: frame.type, data, id: frame.id, at: now() - meta.startedAt };
        if (terminal) return;
      }
      if (chunk.done) break;
    }
    throw new StreamTruncatedError("the stream ended without a terminal event (end or error)", {
      status: response.status,
      requestId: meta.requestId,
    });
  } finally {
    outer?.removeEventListener("abort", onAbort);
    if (finished && reader !== null) {
      drain(reader, 1000); // not awaited: never delays the end of the stream
    } else {
      // Early exit (error, abort, consumer left): closing the connection is what tells the
      // gateway to cancel the upstream.
      controller.abort(outer?.aborted ? abortReason(outer) : new DOMException("stream closed", "AbortError"));
    }
  }
}

/** `<url>/<stream id>`: the id goes at the end of the path, a query string is kept. */
function resumeUrl(url, streamId) {
  const base = "http://relative.invalid"; // resolves a relative url outside a page (node)
  const target = new URL(url, globalThis.location?.href ?? base);
  target.pathname = `${target.pathname.replace(/\/$/, "")}/${encodeURIComponent(streamId)}`;
  return target.origin === base ? target.href.slice(base.length) : target.href;
}

/** Wait `ms`, or reject with the signal's reason on abort; leaves no listener behind. */
const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/** May a failed try be followed by a resume? A broken connection, or a transient status on a
 * resume (`lastId` set: a GET); never the first POST's HTTP error, nor a 204. */
function resumable(err, lastId) {
  if (!(err instanceof GatewayError) || !err.retryable) return false;
  return err.kind === "truncated" || err.kind === "network" || (err.kind === "http" && lastId !== null);
}

/**
 * `openStream`, or with `options.resume` a stream that survives network errors: after a
 * failure it GETs `<url>/<stream id>` with `Last-Event-ID` (the stream id is the `created`
 * event's `id`) until the terminal event, skipping events it already yielded. Gives up after
 * `options.maxResumes` (5) failed tries in a row, waiting `options.resumeDelay` ms (500,
 * doubling) between tries. A resume answered with a transient status (408, 429, 5xx: a proxy
 * while the gateway restarts) is tried again; any other HTTP error on a resume (404 expired,
 * 410 dropped, 403) is thrown, and so is the `StreamTruncatedError` of a 204 (the stream ended
 * before this call saw its end).
 * `options.resumeStreamId` (+ `options.resumeLastId`, default 0) resumes a stream known from
 * before (e.g. kept in sessionStorage across a reload) instead of POSTing; `options.onProgress
 * (streamId, lastId)` is called after each event, to keep such a record.
 */
async function* events(url, body, options, meta) {
  if (!options.resume) {
    yield* openStream(url, body, options, meta);
    return;
  }
  let streamId = options.resumeStreamId ?? null;
  let lastId = streamId === null ? null : (options.resumeLastId ?? 0);
  const maxTries = options.maxResumes ?? 5;
  const firstDelay = options.resumeDelay ?? 500;
  let delay = firstDelay;
  let tries = 0;
  for (;;) {
    const target = lastId === null ? url : resumeUrl(url, streamId);
    try {
      for await (const ev of openStream(target, body, options, meta, lastId)) {
        const n = Number(ev.id);
        if (ev.id !== "" && Number.isInteger(n)) {
          if (lastId !== null && n <= lastId) continue; // already yielded before the break
          lastId = n;
          tries = 0; // progress: the tries and their backoff count per stall
          delay = firstDelay;
        }
        if (ev.type === "created" && typeof ev.data?.id === "string") streamId = ev.data.id;
        yield ev;
        if (streamId !== null && lastId !== null) options.onProgress?.(streamId, lastId);
      }
      return;
    } catch (err) {
      if (options.signal?.aborted || !resumable(err, lastId) || streamId === null || tries >= maxTries) throw err;
    }
    tries += 1;
    await sleep(delay, options.signal);
    delay *= 2;
  }
}

function streamError(ev, meta) {
  const d = ev.data ?? {};
  return new GatewayError(String(d.message ?? "the stream failed"), {
    kind: "stream",
    status: meta.status ?? 200,
    code: String(d.code ?? "error"),
    retryable: Boolean(d.retryable),
    requestId: meta.requestId ?? null,
    data: d,
  });
}

/**
 * The token events of one request, as an async iterator:
 *
 *   for await (const ev of tokenEvents(url, body, { signal })) {
 *     if (ev.type === "delta") out.textContent += ev.data.text;
 *   }
 *
 * Yields `{type, data, id, at}` for every event, ending with `end`. A terminal `error` event
 * throws a `GatewayError` (kind "stream"); so do HTTP errors (kind "http") and a stream that
 * closes without a terminal event (`StreamTruncatedError`). An abort through `signal` throws
 * the signal's reason (an `AbortError` DOMException by default). Leaving the loop early
 * (`break`, `return`, an exception) closes the connection.
 */
export async function* tokenEvents(url, body, options = {}) {
  const meta = {};
  for await (const ev of events(url, body, options, meta)) {
    if (ev.type === "error") throw streamError(ev, meta);
    yield ev;
  }
}

function newSummary() {
  return {
    requestId: null,
    status: 0,
    route: null,
    provider: null,
    model: null,
    text: "",
    reasoning: "",
    toolCalls: [],
    usage: null,
    reason: null,
    end: null,
    events: 0,
    contentEvents: 0,
    timings: {
      startedAt: 0,
      headers: null,
      firstToken: null,
      firstText: null,
      duration: null,
      tokensPerSecond: null,
    },
  };
}

function rate(summary, at) {
  const t = summary.timings;
  if (t.firstToken === null) return null;
  const seconds = (at - t.firstToken) / 1000;
  const tokens = summary.usage?.output_tokens ?? summary.contentEvents;
  // With one token (or none) there is no interval to measure a rate over.
  return seconds > 0 && tokens > 1 ? tokens / seconds : null;
}

/** Fold one event into the summary; returns the tool call it touched, if any. */
function accumulate(s, ev) {
  const t = s.timings;
  s.events++;
  t.duration = ev.at;
  const d = ev.data ?? {};
  switch (ev.type) {
    case "created":
      s.route = d.route ?? null;
      s.provider = d.provider ?? null;
      s.model = d.model ?? null;
      return null;
    case "reasoning":
    case "delta":
    case "tool_call": {
      s.contentEvents++;
      if (t.firstToken === null) t.firstToken = ev.at;
      t.tokensPerSecond = rate(s, ev.at);
      if (ev.type === "reasoning") {
        s.reasoning += d.text ?? "";
        return null;
      }
      if (ev.type === "delta") {
        if (t.firstText === null) t.firstText = ev.at;
        s.text += d.text ?? "";
        return null;
      }
      const index = Number(d.index ?? 0);
      let call = s.toolCalls.find((c) => c.index === index);
      if (!call) {
        call = { index, id: null, name: null, arguments: "" };
        s.toolCalls.push(call);
      }
      if (d.id != null) call.id = d.id;
      if (d.name != null) call.name = d.name;
      call.arguments += d.arguments ?? "";
      return call;
    }
    case "usage":
      s.usage = { ...(s.usage ?? {}), ...d };
      return null;
    case "end":
      s.reason = d.reason ?? null;
      s.end = d;
      t.tokensPerSecond = rate(s, ev.at);
      return null;
    default:
      return null;
  }
}

/**
 * POST `body` to a token-protocol route and stream it through callbacks. Resolves with the
 * summary once the terminal `end` event arrived:
 *
 *   {requestId, status, route, provider, model, text, reasoning,
 *    toolCalls: [{index, id, name, arguments}], usage, reason, end, events, contentEvents,
 *    timings: {startedAt, headers, firstToken, firstText, duration, tokensPerSecond}}
 *
 * Timings are ms since the request started (`startedAt` is its `performance.now()`);
 * `firstToken` is the first content event (reasoning, delta or tool call), `tokensPerSecond`
 * counts `usage.output_tokens` when reported (content events until then) from the first token.
 *
 * Callbacks (all optional; each also receives the live summary as its last argument):
 * onEvent(ev) for every event, first; onCreated(data), onThinking(), onReasoning(text),
 * onClear(), onDelta(text), onToolCall(piece, call), onUsage(usage), onEnd(data).
 *
 * Rejects (after calling onError(err), once) with: GatewayError kind "http" for an error
 * status, kind "stream" for a terminal `error` event, StreamTruncatedError when the stream
 * ends without a terminal event (or a resume gets 204: it had ended before this call saw its
 * end), the signal's reason (AbortError) on abort, even from inside a callback, or whatever a
 * callback threw. The error's `summary` holds what streamed before the failure. Every
 * rejection closes the connection.
 */
export async function streamTokens(url, body, options = {}) {
  const s = newSummary();
  const meta = {};
  try {
    for await (const ev of events(url, body, options, meta)) {
      if (s.events === 0) {
        s.requestId = meta.requestId;
        s.status = meta.status;
        s.timings.startedAt = meta.startedAt;
        s.timings.headers = meta.headersAt;
      }
      const call = accumulate(s, ev);
      options.onEvent?.(ev, s);
      const d = ev.data ?? {};
      switch (ev.type) {
        case "created":
          options.onCreated?.(d, s);
          break;
        case "thinking":
          options.onThinking?.(s);
          break;
        case "reasoning":
          options.onReasoning?.(d.text ?? "", s);
          break;
        case "clear":
          options.onClear?.(s);
          break;
        case "delta":
          options.onDelta?.(d.text ?? "", s);
          break;
        case "tool_call":
          options.onToolCall?.(d, call, s);
          break;
        case "usage":
          options.onUsage?.(d, s);
          break;
        case "end":
          options.onEnd?.(d, s);
          break;
        case "error":
          throw streamError(ev, meta);
        default: // a newer protocol's event: onEvent saw it
      }
    }
    // A callback (onEnd, say) may have aborted after the last event: an abort never resolves.
    if (options.signal?.aborted) throw abortReason(options.signal);
    return s;
  } catch (err) {
    if (s.events === 0) {
      s.requestId = meta.requestId ?? null;
      s.status = meta.status ?? 0;
      s.timings.startedAt = meta.startedAt ?? 0;
      s.timings.headers = meta.headersAt ?? null;
    }
    if (meta.startedAt !== undefined) s.timings.duration = now() - meta.startedAt;
    if (err instanceof GatewayError) err.summary = s;
    try {
      options.onError?.(err, s);
    } catch {
      // the original failure is what the caller needs to see
    }
    throw err;
  }
}
