// An order's live status. EventSource cannot send an Authorization header, and a token in the URL
// (`?access_token=`) would be written to every access log on the way; so this reads the same SSE stream
// with fetch, sends the token as a header, and resumes with Last-Event-ID itself.

import { sleep } from "./common.js";

const FINAL = new Set(["delivered", "cancelled", "rejected"]);

export function followOrder(orderId, token, { onStatus, onState, onFailure }) {
  let lastEventId = null;
  let controller = null;
  let stopped = false;
  let retryMs = 500;

  function handle(event) {
    if (event.id) lastEventId = event.id;
    if (event.retry) retryMs = event.retry;
    if (event.type !== "status") return;
    const status = JSON.parse(event.data);
    onStatus(status);
    if (FINAL.has(status.status)) stop();
  }

  async function run() {
    while (!stopped) {
      controller = new AbortController();
      const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      try {
        const response = await fetch(`/v1/orders/${encodeURIComponent(orderId)}/stream`, {
          headers,
          signal: controller.signal,
          cache: "no-store",
        });
        if (response.status === 401 || response.status === 404) {
          onFailure(response.status);
          return;
        }
        if (response.ok && response.body) {
          onState("live");
          retryMs = 500;
          await readEvents(response.body, handle);
        }
      } catch {
        // A dropped connection: resume below, from the last id seen.
      }
      if (stopped) return;
      onState("reconnecting");
      await sleep(retryMs);
      retryMs = Math.min(retryMs * 2, 5000);
    }
  }

  function stop() {
    stopped = true;
    if (controller) controller.abort();
  }

  run();
  return { stop };
}

/** Parses a text/event-stream body (https://html.spec.whatwg.org/#event-stream-interpretation). */
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [], id: null, retry: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (event.data.length) handle({ ...event, data: event.data.join("\n") });
        event = { type: "message", data: [], id: null, retry: null };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") event.data.push(text);
      else if (field === "event") event.type = text;
      else if (field === "id") event.id = text;
      else if (field === "retry" && /^\d+$/.test(text)) event.retry = Number(text);
    }
  }
}
