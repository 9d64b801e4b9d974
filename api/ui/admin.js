// The admin dashboard: sign in with an admin token, browse and search a city's live catalog, change it.

import { Activity } from "./admin-activity.js";
import { ItemEditor } from "./admin-editor.js";
import { RuleEditor } from "./admin-rule.js";
import {
  api,
  claimsOf,
  el,
  forgetToken,
  loadCities,
  minorUnits,
  money,
  saveToken,
  showConnection,
  takeTokenFromFragment,
  tokenExpiry,
} from "./common.js";
import { followMenu } from "./live-menu.js";

const TOKEN_KEY = "feastflow.admin-token";
const CITY_KEY = "feastflow.admin-city";
const MAX_SEARCH_RESULTS = 200;
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  city: null,
  currency: "INR",
  minor: 100,
  cities: [],
  items: new Map(),
  restaurants: new Map(),
  selected: null,
  search: "",
};
let stream = null;
let renderQueued = false;

const activity = new Activity($("activity"), null, {
  onRejected: (change, status) => {
    if (String(status.reason).startsWith("version_conflict") && editor.editingId === change.itemId) {
      editor.showConflict(status.reason);
    }
  },
});
const editor = new ItemEditor(
  state,
  activity,
  {
    panel: $("editor"),
    heading: $("editor-heading"),
    note: $("editor-note"),
    form: $("item-form"),
    restaurant: $("item-restaurant"),
    itemId: $("item-id"),
    name: $("item-name"),
    description: $("item-description"),
    category: $("item-category"),
    price: $("item-price"),
    priceHelp: $("item-price-help"),
    currency: $("item-currency"),
    available: $("item-available"),
    conflict: $("conflict"),
    conflictDetail: $("conflict-detail"),
    reload: $("reload-item"),
    formError: $("item-form-error"),
    save: $("save-item"),
    close: $("close-editor"),
    remove: $("remove-item"),
    removeConfirm: $("remove-confirm"),
    removeQuestion: $("remove-question"),
    removeYes: $("remove-yes"),
    removeNo: $("remove-no"),
    history: $("history"),
    historyHeading: document.querySelector(".history-heading"),
  },
  { onSignedOut: (message) => signOut(message) },
);
editor.onOpened = () => queueRender();
const rules = new RuleEditor(
  state,
  activity,
  {
    form: $("rule-form"),
    current: $("pricing-current"),
    multiplier: $("rule-multiplier"),
    name: $("rule-name"),
    effective: $("rule-effective"),
    until: $("rule-until"),
    conflict: $("rule-conflict"),
    reload: $("reload-rule"),
    clear: $("clear-rule"),
    formError: $("rule-form-error"),
  },
  { onSignedOut: (message) => signOut(message) },
);

/** A token is good when the API accepts it for an admin read: an unknown event is a 404, not a 401/403. */
async function signIn(token) {
  const error = $("admin-token-error");
  const claims = claimsOf(token);
  if (!claims) {
    error.textContent = "That is not a token (a token has three parts separated by dots).";
    return;
  }
  if (claims.role !== "admin") {
    error.textContent = `This token is for the ${claims.role} role; the dashboard needs an admin token.`;
    return;
  }
  if (tokenExpiry(claims)) {
    error.textContent = tokenExpiry(claims);
    return;
  }
  try {
    await api("/v1/admin/events/sign-in-check", { token });
  } catch (refusal) {
    if (refusal.status === 429) {
      error.textContent = `Too many refused sign-ins from here; try again in ${refusal.retryAfter || "a few"} seconds.`;
      return;
    }
    if (refusal.code !== "unknown_event") {
      error.textContent = `The API refused this token: ${refusal.message}.`;
      $("admin-token").setAttribute("aria-invalid", "true");
      forgetToken(TOKEN_KEY);
      showSignIn();
      return;
    }
  }
  saveToken(TOKEN_KEY, token);
  state.token = token;
  activity.token = token;
  error.textContent = "";
  $("admin-token").value = "";
  $("admin-token").removeAttribute("aria-invalid");
  $("who").textContent = claims.sub;
  $("identity").hidden = false;
  $("signin-panel").hidden = true;
  $("dashboard").hidden = false;
  if (!state.cities.length) state.cities = await loadCities($("city"), CITY_KEY);
  startCity($("city").value);
}

function showSignIn() {
  $("signin-panel").hidden = false;
  $("dashboard").hidden = true;
  $("identity").hidden = true;
  $("admin-token").focus();
}

function signOut(message) {
  forgetToken(TOKEN_KEY);
  state.token = null;
  if (stream) stream.close();
  $("admin-token-error").textContent = message ? `Signed out: ${message}.` : "";
  showSignIn();
}

function startCity(city) {
  if (stream) stream.close();
  localStorage.setItem(CITY_KEY, city);
  Object.assign(state, { city, selected: null });
  state.currency = state.cities.find((c) => c.city === city).currency;
  state.minor = minorUnits(state.currency);
  state.items.clear();
  state.restaurants.clear();
  editor.close();
  rules.load();
  stream = followMenu(city, {
    onSnapshot: (menu) => {
      state.items.clear();
      state.restaurants.clear();
      for (const restaurant of menu.restaurants) {
        state.restaurants.set(restaurant.restaurant_id, restaurant);
        for (const item of restaurant.items) state.items.set(item.item_id, item);
      }
      if (!state.selected && menu.restaurants.length) state.selected = menu.restaurants[0].restaurant_id;
      queueRender();
    },
    onItem: (item) => {
      state.items.set(item.item_id, item);
      activity.sawItem(item.item_id, item.version, false);
      editor.itemChanged(item);
      rules.refreshSoon();
      queueRender();
    },
    onItemRemoved: (removed) => {
      state.items.delete(removed.item_id);
      activity.sawItem(removed.item_id, removed.version, true);
      editor.itemRemoved(removed.item_id);
      queueRender();
    },
    onRestaurant: (restaurant) => {
      state.restaurants.set(restaurant.restaurant_id, { ...state.restaurants.get(restaurant.restaurant_id), ...restaurant });
      queueRender();
    },
    onState: (connection) => showConnection($("connection"), connection),
  });
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderRestaurants();
    renderItems();
  });
}

function matches(item, query) {
  return [item.name, item.item_id, item.category, item.description].some((text) =>
    (text || "").toLowerCase().includes(query),
  );
}

function renderRestaurants() {
  const query = state.search;
  const counts = new Map();
  for (const item of state.items.values()) {
    if (!query || matches(item, query)) counts.set(item.restaurant_id, (counts.get(item.restaurant_id) || 0) + 1);
  }
  const shown = [...state.restaurants.values()]
    .filter((r) => !query || counts.has(r.restaurant_id) || `${r.name} ${r.restaurant_id}`.toLowerCase().includes(query))
    .sort((a, b) => a.restaurant_id.localeCompare(b.restaurant_id));
  $("restaurant-list").replaceChildren(
    ...shown.map((r) =>
      el(
        "li",
        {},
        el("button", {
          type: "button",
          "aria-pressed": String(!query && r.restaurant_id === state.selected),
          "data-restaurant-id": r.restaurant_id,
          text: `${r.name}${r.open === false ? " (closed)" : ""} · ${counts.get(r.restaurant_id) || 0}`,
          onclick: () => {
            state.selected = r.restaurant_id;
            state.search = "";
            $("search").value = "";
            queueRender();
          },
        }),
      ),
    ),
  );
}

function renderItems() {
  const query = state.search;
  let items = [...state.items.values()];
  items = query ? items.filter((item) => matches(item, query)) : items.filter((i) => i.restaurant_id === state.selected);
  items.sort((a, b) => a.item_id.localeCompare(b.item_id));
  const restaurant = state.restaurants.get(state.selected);
  $("items-caption").textContent = query
    ? `${items.length} items matching “${query}”${items.length > MAX_SEARCH_RESULTS ? ` (first ${MAX_SEARCH_RESULTS})` : ""}`
    : restaurant
      ? `${restaurant.name} (${restaurant.restaurant_id}): ${items.length} items`
      : "";
  const editing = editor.editingId;
  $("items").replaceChildren(
    ...items.slice(0, MAX_SEARCH_RESULTS).map((item) => {
      const base = item.base_price_cents ?? item.price_cents;
      return el(
        "tr",
        {
          "data-item-id": item.item_id,
          "data-available": String(item.available !== false),
          class: item.item_id === editing ? "selected" : null,
        },
        el("td", {}, el("div", { text: item.name }), el("div", { class: "muted", text: item.item_id })),
        el("td", { text: item.category || "" }),
        el(
          "td",
          { class: "num" },
          el("div", { class: "price-cell", text: money(item.price_cents, state.currency) }),
          base !== item.price_cents && el("div", { class: "muted", text: `base ${money(base, state.currency)}` }),
        ),
        el("td", { text: item.available === false ? "No" : "Yes" }),
        el("td", { class: "num", text: String(item.version) }),
        el("td", {}, el("button", {
          type: "button",
          "aria-label": `Edit ${item.name}`,
          text: "Edit",
          onclick: () => editor.openExisting(item.item_id),
        })),
      );
    }),
  );
}

$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("admin-token").value.trim());
});
$("signout").addEventListener("click", () => signOut());
$("city").addEventListener("change", () => startCity($("city").value));
$("search").addEventListener("input", () => {
  state.search = $("search").value.trim().toLowerCase();
  queueRender();
});
$("add-item").addEventListener("click", () => editor.openNew(state.selected));

const token = takeTokenFromFragment(TOKEN_KEY);
if (token) signIn(token);
else showSignIn();
