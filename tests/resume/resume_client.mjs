// Runs gateway/static/gateway-client.js under node with `resume: true`; prints JSON lines.
// argv: <client module path> <stream url> <mode>
// modes: events | summary | timings (resumes after a slow reconnect) | ended (resumes a finished
// stream from its terminal id: the gateway answers 204) | abort (a mocked fetch; the url is unused)
// | backoff (the waits between resumes) | headers (a `Headers` object, lower-case names)
// | held (the server keeps the body open after `end` until it hears the call resolved)
const [modulePath, url, mode] = process.argv.slice(2);
const { tokenEvents, streamTokens } = await import(modulePath);
const body = { messages: [{ role: "user", content: "Hi" }] };

/** A fetch answering every request with one chunk holding a whole stream, `end` included. */
function oneChunkFetch() {
  const frames = [
    ["1", "created", { id: "s1", route: "r", provider: "p", model: null }],
    ["2", "delta", { text: "Hel" }],
    ["3", "delta", { text: "lo" }],
    ["4", "end", { reason: "stop" }],
  ];
  const text = frames.map(([id, type, data]) => `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  globalThis.fetch = async () =>
    new Response(new TextEncoder().encode(text.join("")), { headers: { "Content-Type": "text/event-stream" } });
}

try {
  if (mode === "backoff") {
    const waits = [];
    const realSetTimeout = globalThis.setTimeout;
    globalThis.setTimeout = (fn, ms, ...args) => {
      if (/at sleep .*gateway-client/.test(new Error().stack)) waits.push(ms); // between resumes
      return realSetTimeout(fn, ms, ...args);
    };
    const ids = [];
    for await (const ev of tokenEvents(url, body, { resume: true, resumeDelay: 20 })) ids.push(ev.id);
    console.log(JSON.stringify({ ids, waits }));
  } else if (mode === "headers") {
    const key = { Authorization: "Bearer test-key" };
    const out = {};
    for (const [name, headers] of [
      ["Headers", new Headers(key)],
      ["pairs", Object.entries(key)],
      ["lowercase", { "content-type": "application/json; charset=utf-8", authorization: key.Authorization }],
    ]) {
      try {
        out[name] = (await streamTokens(url, body, { headers })).reason;
      } catch (err) {
        out[name] = `${err.status} ${err.code}`;
      }
    }
    console.log(JSON.stringify(out));
  } else if (mode === "held") {
    // The drain's timer never fires here: the call must resolve without waiting for it.
    const realSetTimeout = globalThis.setTimeout;
    globalThis.setTimeout = (fn, ms, ...args) => {
      if (!/at drain .*gateway-client/.test(new Error().stack)) return realSetTimeout(fn, ms, ...args);
      const never = realSetTimeout(() => {}, 2 ** 31 - 1);
      never.unref();
      return never;
    };
    const s = await streamTokens(url, body);
    await fetch(new URL("/resolved", url), { method: "POST" });
    console.log(JSON.stringify({ reason: s.reason, text: s.text }));
  } else if (mode === "summary") {
    const progress = [];
    const s = await streamTokens(url, body, {
      resume: true,
      resumeDelay: 20,
      onProgress: (id, last) => progress.push(last),
    });
    console.log(JSON.stringify({ text: s.text, reason: s.reason, progress }));
  } else if (mode === "timings") {
    const ats = [];
    const s = await streamTokens(url, body, { resume: true, resumeDelay: 200, onEvent: (ev) => ats.push(ev.at) });
    console.log(JSON.stringify({ text: s.text, ats, timings: s.timings }));
  } else if (mode === "ended") {
    let saved = null;
    const options = { resume: true, resumeDelay: 20, onProgress: (id, last) => (saved = { id, last }) };
    await streamTokens(url, body, options);
    const s = await streamTokens(url, null, { ...options, resumeStreamId: saved.id, resumeLastId: saved.last });
    console.log(JSON.stringify({ reason: s.reason, events: s.events }));
  } else if (mode === "abort") {
    oneChunkFetch();
    const controller = new AbortController();
    const after = [];
    const out = {};
    try {
      await streamTokens(url, body, {
        signal: controller.signal,
        onEvent: (ev) => controller.signal.aborted && after.push(ev.type),
        onDelta: () => controller.abort(),
      });
      out.streamTokens = "resolved";
    } catch (err) {
      out.streamTokens = err.name;
    }
    out.afterAbort = after;
    const loop = new AbortController();
    const seen = [];
    try {
      for await (const ev of tokenEvents(url, body, { signal: loop.signal })) {
        seen.push(ev.type);
        if (ev.type === "delta") loop.abort();
      }
      out.tokenEvents = "completed";
    } catch (err) {
      out.tokenEvents = err.name;
    }
    out.seen = seen;
    console.log(JSON.stringify(out));
  } else {
    const out = [];
    for await (const ev of tokenEvents(url, body, { resume: true, resumeDelay: 20 })) {
      out.push([ev.id, ev.type]);
    }
    console.log(JSON.stringify({ events: out }));
  }
} catch (err) {
  console.log(JSON.stringify({ error: err.code ?? err.name, status: err.status ?? 0 }));
}
