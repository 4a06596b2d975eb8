// Runs gateway/static/gateway-client.js under node with `resume: true`; prints JSON lines.
// argv: <client module path> <stream url> <mode: events|summary>
const [modulePath, url, mode] = process.argv.slice(2);
const { tokenEvents, streamTokens } = await import(modulePath);
const body = { messages: [{ role: "user", content: "Hi" }] };
try {
  if (mode === "summary") {
    const progress = [];
    const s = await streamTokens(url, body, {
      resume: true,
      resumeDelay: 20,
      onProgress: (id, last) => progress.push(last),
    });
    console.log(JSON.stringify({ text: s.text, reason: s.reason, progress }));
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
