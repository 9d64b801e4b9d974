// The cart: one restaurant's items, each at the price the customer saw when adding it. That price is what
// the order asks for; if the menu moved since, the API refuses the order and the customer confirms anew.

import { el, money } from "./common.js";

export class Cart {
  constructor(city) {
    this.storageKey = `feastflow.cart.${city}`;
    const saved = JSON.parse(sessionStorage.getItem(this.storageKey) || "null");
    this.restaurantId = saved ? saved.restaurantId : null;
    this.lines = saved ? saved.lines : [];
  }

  get count() {
    return this.lines.reduce((sum, line) => sum + line.quantity, 0);
  }

  get total() {
    return this.lines.reduce((sum, line) => sum + line.quantity * line.price_cents, 0);
  }

  get currency() {
    return this.lines.length ? this.lines[0].currency : null;
  }

  fromOtherRestaurant(item) {
    return this.lines.length > 0 && this.restaurantId !== item.restaurant_id;
  }

  add(item) {
    if (this.fromOtherRestaurant(item)) this.lines = [];
    this.restaurantId = item.restaurant_id;
    const line = this.lines.find((l) => l.item_id === item.item_id);
    if (line) line.quantity = Math.min(line.quantity + 1, 99);
    else {
      this.lines.push({
        item_id: item.item_id,
        name: item.name,
        quantity: 1,
        price_cents: item.price_cents,
        currency: item.currency,
      });
    }
    this.save();
  }

  change(itemId, delta) {
    const line = this.lines.find((l) => l.item_id === itemId);
    if (!line) return;
    line.quantity = Math.min(line.quantity + delta, 99);
    if (line.quantity <= 0) this.lines = this.lines.filter((l) => l !== line);
    this.save();
  }

  /** Takes the prices the API reported as current; items it no longer sells leave the cart. */
  reprice(currentPrices) {
    this.lines = this.lines
      .filter((line) => currentPrices[line.item_id] !== null && currentPrices[line.item_id] !== undefined)
      .map((line) => ({ ...line, price_cents: currentPrices[line.item_id] }));
    this.save();
  }

  remove(itemId) {
    this.lines = this.lines.filter((l) => l.item_id !== itemId);
    this.save();
  }

  clear() {
    this.lines = [];
    this.restaurantId = null;
    this.save();
  }

  orderLines() {
    return this.lines.map(({ item_id, quantity, price_cents }) => ({ item_id, quantity, price_cents }));
  }

  save() {
    if (!this.lines.length) this.restaurantId = null;
    sessionStorage.setItem(this.storageKey, JSON.stringify({ restaurantId: this.restaurantId, lines: this.lines }));
  }
}

/** Draws the cart; `menu` (a MenuView) tells where the live price now differs from the one agreed. */
export function renderCart({ cart, menu, list, total, counter, restaurantLabel, onChange }) {
  counter.textContent = String(cart.count);
  const restaurant = cart.restaurantId ? menu.restaurant(cart.restaurantId) : null;
  restaurantLabel.textContent = restaurant ? `From ${restaurant.name}` : "";
  if (!cart.lines.length) {
    list.replaceChildren(el("li", { class: "empty", text: "Your cart is empty: add something from the menu." }));
    total.textContent = "";
    return;
  }
  list.replaceChildren(
    ...cart.lines.map((line) => {
      const live = menu.item(line.item_id);
      let note = null;
      if (!live) note = "no longer on the menu";
      else if (live.available === false) note = "unavailable right now";
      else if (live.price_cents !== line.price_cents) note = `menu price now ${money(live.price_cents, live.currency)}`;
      return el(
        "li",
        { class: "cart-line", "data-item-id": line.item_id },
        el("span", { class: "cart-name", text: line.name }),
        el(
          "span",
          { class: "qty" },
          el("button", {
            type: "button",
            class: "qty-button",
            "aria-label": `One less ${line.name}`,
            text: "−",
            onclick: () => onChange(line.item_id, -1),
          }),
          el("span", { class: "qty-value", "aria-label": `${line.quantity} × ${line.name}`, text: String(line.quantity) }),
          el("button", {
            type: "button",
            class: "qty-button",
            "aria-label": `One more ${line.name}`,
            text: "+",
            onclick: () => onChange(line.item_id, 1),
          }),
        ),
        el("span", { class: "line-total", text: money(line.quantity * line.price_cents, line.currency) }),
        note && el("span", { class: "line-note", text: note }),
      );
    }),
  );
  total.textContent = `Total ${money(cart.total, cart.currency)}`;
}
