// Placing the cart as an order at the prices shown, confirming new prices when the API refuses the old
// ones, and following the order's status live until it is delivered.

import { api, claimsOf, el, forgetToken, money, randomKey, saveToken, tokenExpiry } from "./common.js";
import { followOrder } from "./order-stream.js";

export const TOKEN_KEY = "feastflow.customer-token";
const ORDER_KEY = "feastflow.order";
const STEPS = [
  ["pending", "Order placed"],
  ["accepted", "Accepted by the restaurant"],
  ["preparing", "Being prepared"],
  ["out_for_delivery", "On its way"],
  ["delivered", "Delivered"],
];
const REASONS = {
  price_changed: "prices changed since you added the items",
  item_unavailable: "an item is no longer available",
  unknown_item: "an item is no longer on the menu",
  restaurant_closed: "the restaurant has just closed",
  unknown_restaurant: "the restaurant is no longer on Feast Flow",
};

export class Checkout {
  constructor({ city, cart, menu, nodes, token, onCartChanged }) {
    Object.assign(this, { city, cart, menu, nodes, token, onCartChanged });
    this.attempt = null; // {key, body}: a retry of the same body reuses its idempotency key
    this.follower = null;
    nodes.placeOrder.addEventListener("click", () => this.place());
    nodes.signin.addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(nodes.tokenInput.value);
    });
    nodes.signout.addEventListener("click", () => this.signOut());
    nodes.confirmPrices.addEventListener("click", () => this.confirmNewPrices());
    nodes.keepShopping.addEventListener("click", () => this.hidePriceChanges());
    nodes.newOrder.addEventListener("click", () => this.finishTracking());
    this.showIdentity();
    const saved = JSON.parse(sessionStorage.getItem(ORDER_KEY) || "null");
    if (saved && saved.city === city && token) this.track(saved.orderId, saved.totalText);
  }

  signIn(raw) {
    const token = raw.trim();
    const claims = claimsOf(token);
    if (!claims || claims.role !== "customer") {
      this.say("That is not a customer token: use the customer link `make run` printed, or `.venv/bin/feastflow token --role customer`.");
      this.nodes.tokenInput.setAttribute("aria-invalid", "true");
      return;
    }
    if (tokenExpiry(claims)) {
      this.say(tokenExpiry(claims));
      this.nodes.tokenInput.setAttribute("aria-invalid", "true");
      return;
    }
    saveToken(TOKEN_KEY, token);
    this.token = token;
    this.nodes.tokenInput.value = "";
    this.nodes.tokenInput.removeAttribute("aria-invalid");
    this.say("");
    this.showIdentity();
  }

  signOut() {
    forgetToken(TOKEN_KEY);
    this.token = null;
    this.showIdentity();
  }

  showIdentity() {
    const claims = this.token ? claimsOf(this.token) : null;
    this.nodes.signin.hidden = Boolean(claims);
    this.nodes.identity.hidden = !claims;
    this.nodes.who.textContent = claims ? claims.sub : "";
  }

  say(message) {
    this.nodes.message.textContent = message;
  }

  async place() {
    if (!this.cart.lines.length) return;
    if (!this.token) {
      this.say("Sign in with your customer token to place the order.");
      this.nodes.tokenInput.focus();
      return;
    }
    const body = {
      city: this.city,
      restaurant_id: this.cart.restaurantId,
      lines: this.cart.orderLines(),
    };
    const fingerprint = JSON.stringify(body);
    if (!this.attempt || this.attempt.fingerprint !== fingerprint) this.attempt = { key: randomKey(), fingerprint };
    const totalText = money(this.cart.total, this.cart.currency);
    this.nodes.placeOrder.disabled = true;
    this.say("Placing your order…");
    try {
      const placed = await api("/v1/orders", {
        method: "POST",
        token: this.token,
        body: { idempotency_key: this.attempt.key, ...body },
      });
      this.attempt = null;
      this.say("");
      this.placedHere = placed.order_id;
      this.track(placed.order_id, totalText);
    } catch (error) {
      this.explainRefusal(error);
    } finally {
      this.nodes.placeOrder.disabled = !this.cart.lines.length;
    }
  }

  explainRefusal(error) {
    if (error.status === 401) {
      this.signOut();
      this.say(`Your token was refused (${error.message}). Sign in again.`);
    } else if (error.status === 429) {
      this.say(`Too many orders at once; try again in ${error.retryAfter || 1} s.`);
    } else if (error.status === 0 || error.status >= 500) {
      this.say(`${error.message}. Your order was not placed yet; pressing Place order again is safe.`);
    } else {
      this.say(`The order was refused: ${error.message}${error.field ? ` (${error.field})` : ""}.`);
    }
  }

  track(orderId, totalText) {
    sessionStorage.setItem(ORDER_KEY, JSON.stringify({ orderId, city: this.city, totalText }));
    const { tracking, steps, orderLabel } = this.nodes;
    tracking.hidden = false;
    tracking.dataset.orderId = orderId;
    tracking.dataset.status = "pending";
    orderLabel.textContent = `Order ${orderId.slice(0, 8)} · ${totalText}`;
    steps.replaceChildren(
      ...STEPS.map(([status, label]) => el("li", { "data-step": status }, el("span", { text: label }))),
    );
    this.nodes.newOrder.hidden = true;
    if (this.follower) this.follower.stop();
    this.follower = followOrder(orderId, this.token, {
      onStatus: (status) => this.showStatus(status),
      onState: (state) => {
        tracking.dataset.connection = state;
      },
      onFailure: () => this.finishTracking(),
    });
  }

  showStatus(event) {
    const { tracking, steps, statusText } = this.nodes;
    tracking.dataset.status = event.status;
    const reached = STEPS.findIndex(([status]) => status === event.status);
    for (const [index, node] of [...steps.children].entries()) {
      node.dataset.done = String(reached >= 0 && index <= reached);
      if (index === reached) node.setAttribute("aria-current", "step");
      else node.removeAttribute("aria-current");
    }
    if (event.status === "accepted" && event.order_id === this.placedHere) {
      this.cart.clear();
      this.onCartChanged();
    }
    const label = STEPS.find(([status]) => status === event.status);
    statusText.textContent = label ? label[1] : event.status === "cancelled" ? "Cancelled" : "";
    if (event.status === "rejected") this.rejected(event);
    if (["delivered", "cancelled"].includes(event.status)) this.nodes.newOrder.hidden = false;
  }

  rejected(event) {
    this.finishTracking();
    if (event.reason === "price_changed" && event.current_prices) {
      this.showPriceChanges(event.current_prices);
      return;
    }
    this.say(`The restaurant could not take this order: ${REASONS[event.reason] || event.reason}.`);
    this.onCartChanged();
  }

  showPriceChanges(current) {
    this.pendingPrices = current;
    const rows = this.cart.lines.map((line) => {
      const now = current[line.item_id];
      const text =
        now === null || now === undefined
          ? `${line.name}: no longer on the menu (will be left out)`
          : `${line.name}: ${money(line.price_cents, line.currency)} → ${money(now, line.currency)}`;
      return el("li", { "data-item-id": line.item_id, "data-changed": String(now !== line.price_cents), text });
    });
    this.nodes.priceChanges.replaceChildren(...rows);
    const newTotal = this.cart.lines.reduce((sum, line) => sum + line.quantity * (current[line.item_id] ?? 0), 0);
    this.nodes.newTotal.textContent = `New total ${money(newTotal, this.cart.currency)}`;
    this.nodes.priceConfirm.hidden = false;
    this.nodes.confirmPrices.focus();
  }

  hidePriceChanges() {
    this.nodes.priceConfirm.hidden = true;
    this.pendingPrices = null;
  }

  async confirmNewPrices() {
    this.cart.reprice(this.pendingPrices);
    this.hidePriceChanges();
    this.onCartChanged();
    await this.place();
  }

  finishTracking() {
    if (this.follower) this.follower.stop();
    this.follower = null;
    sessionStorage.removeItem(ORDER_KEY);
    this.nodes.tracking.hidden = true;
  }
}
