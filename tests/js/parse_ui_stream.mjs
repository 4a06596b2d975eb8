// Runs a UI message stream through the real Vercel AI SDK client code, once per installed version.
//
// usage: node parse_ui_stream.mjs URL BODY_JSON      (POSTs BODY_JSON to URL with real fetch)
//        node parse_ui_stream.mjs --file PATH         (replays a recorded response body)
//
// For each version this does what useChat does: DefaultChatTransport.sendMessages() (fetch, then
// parseJsonEventStream with the version's uiMessageChunkSchema; a chunk the schema rejects
// fails the stream) and readUIMessageStream() (builds the assistant message from the chunks).
// Prints {"<version>": {"ok", "error", "errors", "message", "chunks"}} as JSON on stdout.

import { readFileSync } from "node:fs";

const VERSIONS = ["ai-5.0.0", "ai-5-latest", "ai-7"];

async function load(name) {
  try {
    return await import(name);
  } catch (err) {
    return { loadError: String(err) };
  }
}

function replayFetch(path) {
  const body = readFileSync(path);
  return async () =>
    new Response(body, {
      status: 200,
      headers: { "content-type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1" },
    });
}

async function run(ai, api, requestBody, fetchImpl) {
  const result = { ok: false, error: null, errors: [], message: null, chunks: [] };
  try {
    const transport = new ai.DefaultChatTransport({
      api,
      fetch: fetchImpl,
      // the gateway's common request; useChat would send UIMessages (the gateway maps both)
      prepareSendMessagesRequest: () => ({ body: requestBody }),
    });
    const stream = await transport.sendMessages({
      chatId: "chat-1",
      messages: [],
      abortSignal: undefined,
      trigger: "submit-message",
      messageId: undefined,
    });
    const [forParts, forLog] = stream.tee();
    const logging = (async () => {
      const reader = forLog.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        result.chunks.push(value);
      }
    })();
    let last = null;
    for await (const message of ai.readUIMessageStream({
      stream: forParts,
      onError: (err) => result.errors.push(String(err && err.message ? err.message : err)),
    })) {
      last = message;
    }
    await logging;
    result.message = last;
    result.ok = true;
  } catch (err) {
    result.error = `${err && err.name}: ${err && err.message ? err.message : err}`;
  }
  return result;
}

async function main() {
  const args = process.argv.slice(2);
  let api = "http://127.0.0.1/unused";
  let requestBody = {};
  let fetchImpl;
  if (args[0] === "--file") {
    fetchImpl = replayFetch(args[1]);
  } else {
    api = args[0];
    requestBody = JSON.parse(args[1] || "{}");
    fetchImpl = globalThis.fetch;
  }
  const out = {};
  for (const name of VERSIONS) {
    const ai = await load(name);
    out[name] = ai.loadError ? { ok: false, error: ai.loadError } : await run(ai, api, requestBody, fetchImpl);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
