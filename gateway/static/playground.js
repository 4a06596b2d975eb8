// The playground page (contract section 8): pick a route, send a message, watch it stream.
// It uses the gateway's own client module exactly as an app would. Every piece of streamed or
// server-provided text goes into the page through textContent, never innerHTML.

import { streamTokens } from "/static/gateway-client.js";

const $ = (id) => document.getElementById(id);
const el = {
  route: $("route"),
  routeInfo: $("route-info"),
  transcript: $("transcript"),
  empty: $("empty"),
  error: $("error"),
  composer: $("composer"),
  message: $("message"),
  send: $("send"),
  stop: $("stop"),
  newChat: $("new-chat"),
  status: $("status"),
  ttft: $("ttft"),
  tps: $("tps"),
  duration: $("duration"),
  events: $("events"),
  usage: $("usage"),
  reason: $("reason"),
  requestId: $("request-id"),
  system: $("system"),
  apiKey: $("api-key"),
  maxTokens: $("max-tokens"),
  logToggle: $("log-toggle"),
  logClear: $("log-clear"),
  log: $("log"),
};

const MAX_LOG_LINES = 2000;
let routes = [];
let context = []; // completed turns only: what the next request sends as context
let controller = null; // the AbortController of the stream in flight
let ticker = null;

function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(state, label = state) {
  el.status.dataset.state = state;
  el.status.textContent = label;
}

function showError(err) {
  el.error.replaceChildren();
  if (!err) {
    el.error.hidden = true;
    return;
  }
  // The HTTP status only for an error status before the stream (kind "http"): a stream that
  // failed mid-way was a 200, which says nothing about the failure.
  const status = err.kind === "http" && err.status ? `HTTP ${err.status}` : null;
  const head = [err.code, status].filter(Boolean).join(" · ");
  if (head) el.error.append(make("strong", "error-code", head));
  el.error.append(make("span", "error-message", err.message ?? String(err)));
  if (err.retryable) el.error.append(make("span", "error-hint", "retryable"));
  el.error.hidden = false;
}

const ms = (v) => (v == null ? "–" : v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`);

function renderStats(s, running) {
  const t = s.timings;
  el.ttft.textContent = ms(t.firstToken);
  el.tps.textContent = t.tokensPerSecond == null ? "–" : t.tokensPerSecond.toFixed(1);
  el.duration.textContent = ms(running ? performance.now() - t.startedAt : t.duration);
  el.events.textContent = s.events ? String(s.events) : "–";
  const u = s.usage;
  el.usage.textContent = u ? `${u.input_tokens ?? "?"} / ${u.output_tokens ?? "?"}` : "–";
  el.reason.textContent = s.reason ?? "–";
  el.requestId.textContent = s.requestId ?? "–";
}

function resetStats() {
  for (const node of [el.ttft, el.tps, el.duration, el.events, el.usage, el.reason, el.requestId]) {
    node.textContent = "–";
  }
}

function log(line, kind = "") {
  const row = make("span", `log-line ${kind}`.trim(), line + "\n");
  el.log.append(row);
  while (el.log.childElementCount > MAX_LOG_LINES) el.log.firstElementChild.remove();
  if (!el.log.hidden) el.log.scrollTop = el.log.scrollHeight;
}

// Streamed pieces reach the page once per animation frame, not once per event: a fast stream
// delivers thousands of events a second, and touching the layout (appending, scrolling) for
// each one costs time in proportion to the text already shown, which froze the page on a long
// answer. `pending` gathers what arrived since the last frame; `flush()` writes it.
const pending = { view: null, reasoning: "", text: "", log: [], stats: null, status: null, scroll: false };
let frame = 0;

function schedule() {
  if (!frame) frame = requestAnimationFrame(flush);
}

function flush() {
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  const view = pending.view;
  if (view && pending.reasoning) {
    view.reasoning.hidden = false;
    view.reasoningText.append(pending.reasoning);
  }
  if (view && pending.text) {
    view.thinking.hidden = true;
    if (view.reasoning.open && !view.text.firstChild) view.reasoning.open = false;
    view.text.append(pending.text);
  }
  pending.reasoning = pending.text = "";
  if (pending.log.length) {
    const rows = pending.log.splice(0);
    const fragment = document.createDocumentFragment();
    for (const [line, kind] of rows.slice(-MAX_LOG_LINES)) {
      fragment.append(make("span", `log-line ${kind}`.trim(), line + "\n"));
    }
    el.log.append(fragment);
    let extra = el.log.childElementCount - MAX_LOG_LINES;
    while (extra-- > 0) el.log.firstElementChild.remove();
    if (!el.log.hidden) el.log.scrollTop = el.log.scrollHeight;
  }
  if (pending.status) setStatus(...pending.status);
  if (pending.stats) renderStats(pending.stats, true);
  if (pending.scroll) scrollToEnd();
  pending.status = pending.stats = null;
  pending.scroll = false;
}

function scrollToEnd() {
  // On wide screens the transcript scrolls inside its panel; on phones the page scrolls.
  if (el.transcript.scrollHeight > el.transcript.clientHeight) {
    el.transcript.scrollTop = el.transcript.scrollHeight;
  } else {
    el.transcript.lastElementChild?.scrollIntoView({ block: "end" });
  }
}

// -- routes -------------------------------------------------------------------------------------

async function loadRoutes() {
  try {
    const resp = await fetch("/v1/routes", { cache: "no-store" });
    if (!resp.ok) throw new Error(`GET /v1/routes answered HTTP ${resp.status}`);
    routes = (await resp.json()).routes ?? [];
  } catch (err) {
    el.route.replaceChildren(make("option", "", "no routes"));
    showError({ code: "routes_unavailable", message: err.message });
    return;
  }
  el.route.replaceChildren(
    ...routes.map((r) => {
      const opt = make("option", "", r.name);
      opt.value = r.name;
      return opt;
    }),
  );
  if (routes.length === 0) {
    el.route.replaceChildren(make("option", "", "no routes configured"));
    return;
  }
  const wanted = new URLSearchParams(location.search).get("route");
  if (wanted && routes.some((r) => r.name === wanted)) el.route.value = wanted;
  el.route.disabled = false;
  el.send.disabled = false;
  describeRoute();
}

function currentRoute() {
  return routes.find((r) => r.name === el.route.value) ?? null;
}

function describeRoute() {
  const r = currentRoute();
  el.routeInfo.replaceChildren();
  if (!r) return;
  el.routeInfo.append(make("span", "pill", r.provider), make("code", "", `POST ${r.path}`));
  if (r.format !== "tokens") el.routeInfo.append(make("span", "pill muted", `${r.format} → tokens`));
}

function streamUrl(route) {
  // The playground reads the token protocol; a route whose default format is another one
  // still speaks it on request.
  return route.format === "tokens" ? route.path : `${route.path}?format=tokens`;
}

// -- one turn -----------------------------------------------------------------------------------

function addUserTurn(text) {
  el.empty?.remove();
  const turn = make("article", "msg user");
  turn.append(make("div", "who", "You"), make("div", "body", text));
  el.transcript.append(turn);
}

function addAssistantTurn(routeName) {
  const turn = make("article", "msg assistant");
  const who = make("div", "who", routeName);
  const state = make("span", "turn-state", "");
  who.append(state);
  const thinking = make("div", "thinking");
  thinking.hidden = true;
  thinking.append(make("span", "dots"), make("span", "", "Thinking…"));
  const reasoning = make("details", "reasoning");
  reasoning.hidden = true;
  reasoning.open = true;
  const reasoningSummary = make("summary", "", "Reasoning");
  const reasoningText = make("div", "reasoning-text");
  reasoning.append(reasoningSummary, reasoningText);
  const text = make("div", "text");
  const tools = make("div", "tools");
  turn.append(who, thinking, reasoning, text, tools);
  el.transcript.append(turn);
  scrollToEnd();
  return { turn, state, thinking, reasoning, reasoningSummary, reasoningText, text, tools, toolNodes: new Map() };
}

function renderToolCall(view, call) {
  let node = view.toolNodes.get(call.index);
  if (!node) {
    node = make("div", "tool-call");
    node.append(make("div", "tool-head"), make("pre", "tool-args"));
    view.tools.append(node);
    view.toolNodes.set(call.index, node);
  }
  const head = node.firstChild;
  head.replaceChildren(make("span", "tool-label", "tool call"), make("code", "tool-name", call.name ?? "?"));
  if (call.id) head.append(make("span", "tool-id", call.id));
  let args = call.arguments;
  try {
    args = JSON.stringify(JSON.parse(call.arguments), null, 2);
  } catch {
    // still streaming (partial JSON): show it as it is
  }
  node.lastChild.textContent = args;
}

function finishTurn(view, state, label) {
  view.thinking.hidden = true;
  view.turn.dataset.state = state;
  view.state.textContent = label;
  if (view.reasoning.open && view.text.textContent) view.reasoning.open = false;
}

function requestBody(text) {
  const messages = [];
  const system = el.system.value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...context, { role: "user", content: text });
  const body = { messages };
  const max = parseInt(el.maxTokens.value, 10);
  if (Number.isFinite(max) && max > 0) body.max_tokens = max;
  return body;
}

function setBusy(busy) {
  el.send.disabled = busy || routes.length === 0;
  el.stop.disabled = !busy;
  el.route.disabled = busy || routes.length === 0;
  el.newChat.disabled = busy;
}

// A resumable route's stream (contract section 12) survives a reload: its id is kept in
// sessionStorage until the stream ends, and the page replays it from the start on load.
const RESUME_KEY = "gateway-playground-stream";
let inFlight = null; // { url, headers } of the resumable stream now streaming
let unloading = false;
window.addEventListener("pagehide", () => {
  unloading = true;
});

function savedStream() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(RESUME_KEY) ?? "null");
    return saved && typeof saved.streamId === "string" && typeof saved.route === "string" ? saved : null;
  } catch {
    return null;
  }
}

async function send(resumed = null) {
  const text = resumed ? String(resumed.text ?? "") : el.message.value.trim();
  const route = resumed ? routes.find((r) => r.name === resumed.route) : currentRoute();
  if (!text || !route || controller) return;
  showError(null);
  resetStats();
  addUserTurn(text);
  if (!resumed) el.message.value = "";
  const view = addAssistantTurn(route.name);
  const body = requestBody(text);
  const resumeOptions = !route.resume
    ? {}
    : {
        resume: true,
        ...(resumed ? { resumeStreamId: resumed.streamId, resumeLastId: 0 } : {}),
        onProgress(streamId, lastId) {
          inFlight = { url: `${route.path}/${encodeURIComponent(streamId)}`, headers };
          sessionStorage.setItem(RESUME_KEY, JSON.stringify({ route: route.name, streamId, lastId, text }));
        },
      };
  const headers = {};
  const key = el.apiKey.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;

  controller = new AbortController();
  setBusy(true);
  setStatus("connecting", "connecting…");
  log(resumed ? `GET ${route.path}/${resumed.streamId} (resumed after a reload)` : `POST ${streamUrl(route)}`, "req");
  let live = null;
  pending.view = view;
  ticker = setInterval(() => live && renderStats(live, true), 100);
  try {
    const summary = await streamTokens(streamUrl(route), body, {
      ...resumeOptions,
      signal: controller.signal,
      headers,
      onEvent(ev, s) {
        live = s;
        pending.log.push([`${ev.id.padStart(4)} ${ev.type.padEnd(9)} ${JSON.stringify(ev.data)}`, ev.type]);
        pending.stats = s;
        schedule();
      },
      onCreated() {
        setStatus("waiting", "waiting…");
      },
      onThinking() {
        view.thinking.hidden = false;
        setStatus("thinking", "thinking…");
        scrollToEnd();
      },
      onReasoning(piece) {
        pending.reasoning += piece; // written once per frame (flush)
        pending.status = ["streaming", "reasoning…"];
        pending.scroll = true;
      },
      onClear() {
        view.thinking.hidden = true;
      },
      onDelta(piece) {
        pending.text += piece; // written once per frame (flush)
        pending.status = ["streaming", "streaming…"];
        pending.scroll = true;
      },
      onToolCall(_piece, call) {
        flush(); // the text before the call first
        view.thinking.hidden = true;
        renderToolCall(view, call);
        setStatus("streaming", "tool call…");
        scrollToEnd();
      },
    });
    flush();
    renderStats(summary, false);
    finishTurn(view, "done", summary.reason === "stop" ? "" : summary.reason);
    setStatus("done", `done · ${summary.reason}`);
    if (summary.reason === "stop" || summary.reason === "length") {
      context.push({ role: "user", content: text }, { role: "assistant", content: summary.text });
    }
  } catch (err) {
    flush(); // what streamed before the failure
    const s = err.summary ?? live;
    if (s) renderStats(s, false);
    if (err.name === "AbortError") {
      finishTurn(view, "stopped", "stopped");
      setStatus("stopped", "stopped");
      log("stopped by the user (connection closed)", "stop");
    } else {
      finishTurn(view, "error", "failed");
      view.turn.append(make("div", "turn-error", `${err.code ?? err.name}: ${err.message}`));
      setStatus("error", "error");
      showError(err);
      log(`failed: ${err.code ?? err.name}: ${err.message}`, "error");
      scrollToEnd(); // the failed turn's error line, above the banner
    }
  } finally {
    // Anything that settled (done, failed for good, stopped) is over; a page being unloaded
    // (its connection cut by the reload) keeps the record for the next load.
    if (!unloading) sessionStorage.removeItem(RESUME_KEY);
    inFlight = null;
    pending.view = null;
    clearInterval(ticker);
    controller = null;
    setBusy(false);
    el.message.focus();
  }
}

// -- wiring -------------------------------------------------------------------------------------

el.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
el.message.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});
el.stop.addEventListener("click", () => {
  // A resumable stream may run on without its client (on_client_abort: detach): stop it too.
  if (inFlight) fetch(inFlight.url, { method: "DELETE", headers: inFlight.headers }).catch(() => {});
  controller?.abort();
});
el.newChat.addEventListener("click", () => {
  context = [];
  el.transcript.replaceChildren(el.empty);
  showError(null);
  resetStats();
  setStatus("idle");
});
el.route.addEventListener("change", () => {
  describeRoute();
  const url = new URL(location.href);
  url.searchParams.set("route", el.route.value);
  window.history.replaceState(null, "", url);
});
el.logToggle.addEventListener("change", () => {
  el.log.hidden = !el.logToggle.checked;
  el.logClear.hidden = el.log.hidden;
  if (!el.log.hidden) el.log.scrollTop = el.log.scrollHeight;
});
el.logClear.addEventListener("click", () => el.log.replaceChildren());

loadRoutes().then(() => {
  const saved = savedStream();
  if (saved) send(saved);
});
