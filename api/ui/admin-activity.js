// What became of each change an admin submitted (published → applied, or rejected, and how long until it
// showed on the live customer menu stream), and an item's history as the audit trail records it.

import { api, el, money, sleep } from "./common.js";
import { when } from "./admin-forms.js";

const POLL_MS = 150;
const GIVE_UP_MS = 60_000;
const HISTORY_ATTEMPTS = 20;

export class Activity {
  constructor(list, token, { onRejected }) {
    this.list = list;
    this.token = token;
    this.onRejected = onRejected;
    this.pending = new Set(); // changes not yet seen on the live stream
    this.arrivals = new Map(); // item_id -> [{version, removed, at}] seen on the live stream
  }

  /** `change`: {label, eventIds, itemId?, removal?, onApplied?, startedAt (performance.now() at submit)}. */
  track(change) {
    const badge = el("span", { class: "badge", "data-status": "published", text: "published" });
    const detail = el("span", { class: "detail", text: " accepted by the event log" });
    const node = el(
      "li",
      { "data-event-id": change.eventIds[0] },
      el("strong", { text: change.label }),
      " ",
      badge,
      detail,
    );
    this.list.prepend(node);
    Object.assign(change, { node, badge, detail, version: null, reachedMs: null, status: "published" });
    if (change.itemId) this.pending.add(change);
    this.follow(change);
  }

  async follow(change) {
    const deadline = performance.now() + GIVE_UP_MS;
    const eventId = change.eventIds[change.eventIds.length - 1];
    while (performance.now() < deadline) {
      let status;
      try {
        status = await api(`/v1/admin/events/${encodeURIComponent(eventId)}`, { token: this.token });
      } catch {
        await sleep(POLL_MS * 4);
        continue;
      }
      if (status.status === "applied") {
        change.status = "applied";
        change.version = status.version ?? null;
        change.appliedMs = Date.parse(status.applied_at) - Date.parse(status.published_at);
        this.checkReached(change);
        this.describe(change);
        if (change.onApplied) change.onApplied(status);
        return;
      }
      if (status.status === "rejected") {
        change.status = "rejected";
        this.pending.delete(change);
        change.badge.dataset.status = "rejected";
        change.badge.textContent = "rejected";
        change.detail.textContent = ` ${status.reason}`;
        this.onRejected(change, status);
        return;
      }
      await sleep(POLL_MS);
    }
    change.detail.textContent = " still waiting to be applied; check the worker";
  }

  describe(change) {
    change.badge.dataset.status = change.status;
    change.badge.textContent = change.status;
    const parts = [];
    if (Number.isFinite(change.appliedMs)) parts.push(`applied ${Math.max(change.appliedMs, 0)} ms after publishing`);
    if (change.version) parts.push(`version ${change.version}`);
    if (change.reachedMs !== null) parts.push(`on the live customer menu ${change.reachedMs} ms after you submitted`);
    else if (change.itemId) parts.push("waiting for the live menu…");
    change.detail.textContent = ` ${parts.join(" · ")}`;
    if (change.reachedMs !== null) change.node.dataset.reachedMs = String(change.reachedMs);
  }

  /** Called for every item change on the admin's own live menu stream (the one customers get). */
  sawItem(itemId, version, removed) {
    const seen = this.arrivals.get(itemId) || [];
    seen.push({ version, removed, at: performance.now() });
    this.arrivals.set(itemId, seen.slice(-20));
    for (const change of this.pending) {
      if (change.itemId === itemId) this.checkReached(change);
    }
  }

  checkReached(change) {
    if (!this.pending.has(change)) return;
    const seen = this.arrivals.get(change.itemId) || [];
    const arrival = seen.find(
      (a) =>
        a.at >= change.startedAt &&
        (change.removal ? a.removed : change.version !== null && a.version >= change.version),
    );
    if (!arrival) return;
    change.reachedMs = Math.round(arrival.at - change.startedAt);
    this.pending.delete(change);
    if (change.status === "applied") this.describe(change);
  }
}

const HIDDEN_FIELDS = new Set(["version", "restaurant_id", "item_id", "currency"]);

function show(key, value, currency) {
  if (value === undefined || value === null) return "—";
  if (key.endsWith("_cents")) return money(value, currency);
  if (typeof value === "boolean") return value ? "yes" : "no";
  return value === "" ? "(empty)" : String(value);
}

/** One line per field an event changed: `price: ₹120.00 → ₹150.00`. */
function changes(entry, currency) {
  if (!entry.old) return ["created"];
  if (!entry.new) return ["removed"];
  const keys = new Set([...Object.keys(entry.old), ...Object.keys(entry.new)]);
  const lines = [];
  for (const key of keys) {
    if (HIDDEN_FIELDS.has(key) || entry.old[key] === entry.new[key]) continue;
    lines.push(`${key}: ${show(key, entry.old[key], currency)} → ${show(key, entry.new[key], currency)}`);
  }
  return lines.length ? lines : ["no change"];
}

/** The audit trail is written just after the change reaches customers; `expectEventId` waits for its row. */
export async function showHistory(container, { token, city, itemId, currency, expectEventId = null }) {
  if (!container.childElementCount) container.replaceChildren(el("p", { class: "muted", text: "Loading the history…" }));
  const path = `/v1/admin/items/${encodeURIComponent(city)}/${encodeURIComponent(itemId)}/history`;
  let body;
  for (let attempt = 0; ; attempt += 1) {
    try {
      body = await api(path, { token });
    } catch (error) {
      body = null;
      if (error.code !== "unknown_item" || !expectEventId || attempt >= HISTORY_ATTEMPTS) {
        const text = error.code === "unknown_item" ? "No applied changes recorded yet." : error.message;
        container.replaceChildren(el("p", { class: "muted", text }));
        return;
      }
    }
    const found = body && (!expectEventId || body.history.some((entry) => entry.event_id === expectEventId));
    if (found || attempt >= HISTORY_ATTEMPTS) break;
    await sleep(POLL_MS * 2);
  }
  if (!body) return;
  const rows = body.history
    .slice()
    .reverse()
    .map((entry) =>
      el(
        "tr",
        { "data-event-id": entry.event_id },
        el("td", {}, el("div", { text: when(entry.applied_at) }), el("div", { class: "muted", text: entry.actor })),
        el(
          "td",
          {},
          el("div", { text: entry.type }),
          ...changes(entry, currency).map((line) => el("div", { class: "change", text: line })),
        ),
        el("td", { class: "num", text: String(entry.version) }),
      ),
    );
  container.replaceChildren(
    el(
      "table",
      {},
      el("caption", { class: "muted", text: "Newest first" }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["When, who", "Change: old → new", "Version"].map((label) => el("th", { scope: "col", text: label })),
        ),
      ),
      el("tbody", {}, ...rows),
    ),
  );
}
