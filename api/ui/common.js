// What both pages share: tokens, calls to the public API, money, and building DOM nodes.

/** A token handed over in the URL fragment (`#token=...`) is kept for this tab only and taken out of the
 *  address bar at once: fragments never reach a server or its logs, and the address can then be shared. */
export function takeTokenFromFragment(storageKey) {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(storageKey, token.trim());
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(storageKey);
}

export function saveToken(storageKey, token) {
  sessionStorage.setItem(storageKey, token.trim());
}

export function forgetToken(storageKey) {
  sessionStorage.removeItem(storageKey);
}

/** The token's claims, read without verifying (the API verifies); null when it is not a JWT at all. */
export function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

/** Why a token cannot work any more, before the API is asked: tokens live hours (admin) to a day (customer). */
export function tokenExpiry(claims) {
  if (!claims || typeof claims.exp !== "number") return null;
  const expires = new Date(claims.exp * 1000);
  return expires <= new Date() ? `This token expired at ${expires.toLocaleString()}; ask for a new one.` : null;
}

/** The contract's error body, as an exception: status, machine code, message, and the field at fault. */
export class ApiError extends Error {
  constructor(status, error, retryAfter) {
    super(error.message || `request failed (${status})`);
    this.status = status;
    this.code = error.code || "http_error";
    this.field = error.field || null;
    this.retryAfter = retryAfter;
  }
}

export async function api(path, { method = "GET", body, token, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, { code: "network", message: "cannot reach Feast Flow; check the connection and retry" });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : { message: `the server answered ${response.status}` };
    throw new ApiError(response.status, error, Number(response.headers.get("Retry-After")) || null);
  }
  return data;
}

/** An idempotency key: random, and available outside secure contexts too (unlike crypto.randomUUID). */
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const formats = new Map();

function moneyFormat(currency) {
  if (!formats.has(currency)) {
    formats.set(currency, new Intl.NumberFormat(undefined, { style: "currency", currency }));
  }
  return formats.get(currency);
}

/** Minor units per major unit of a currency (100 for INR and EUR, 1 for JPY). */
export function minorUnits(currency) {
  return 10 ** moneyFormat(currency).resolvedOptions().maximumFractionDigits;
}

export function money(cents, currency) {
  return moneyFormat(currency).format(cents / minorUnits(currency));
}

/** `el("p", {class: "note", text: "Hi"}, child...)`: attributes, `text`, `on<event>` handlers, children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function loadCities(select, storageKey) {
  const cities = await api("/v1/cities");
  const label = (c) => `${c.name} (${c.city})${c.launching ? " — launching soon" : ""}`;
  select.replaceChildren(...cities.map((c) => el("option", { value: c.city, text: label(c) })));
  const remembered = localStorage.getItem(storageKey);
  if (cities.some((c) => c.city === remembered)) select.value = remembered;
  return cities;
}

/** Shows the connection state of a live stream: `live`, `connecting` or `reconnecting`. */
export function showConnection(node, state) {
  const labels = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" };
  node.dataset.state = state;
  node.textContent = labels[state] || state;
}
