// The customer's menu, by restaurant and category, changed in place as events arrive: nothing is ever
// re-rendered wholesale, so scrolling, focus and the cart stay put while prices move.

import { el, money } from "./common.js";

const HIGHLIGHT_MS = 2500;

export class MenuView {
  constructor(root, { onAdd }) {
    this.root = root;
    this.onAdd = onAdd;
    this.items = new Map(); // item_id -> {item, node}
    this.restaurants = new Map(); // restaurant_id -> {restaurant, node}
    this.hasData = false;
  }

  item(itemId) {
    const entry = this.items.get(itemId);
    return entry ? entry.item : null;
  }

  restaurant(restaurantId) {
    const entry = this.restaurants.get(restaurantId);
    return entry ? entry.restaurant : null;
  }

  /** A whole menu: the first one, or a fresh one after a resume was no longer possible (diffed in). */
  applySnapshot(menu) {
    const highlight = this.hasData;
    const seenRestaurants = new Set();
    const seenItems = new Set();
    for (const restaurant of menu.restaurants) {
      seenRestaurants.add(restaurant.restaurant_id);
      this.applyRestaurant(restaurant);
      for (const item of restaurant.items) {
        seenItems.add(item.item_id);
        this.applyItem(item, { highlight });
      }
    }
    for (const itemId of [...this.items.keys()]) {
      if (!seenItems.has(itemId)) this.removeItem({ item_id: itemId });
    }
    for (const [restaurantId, entry] of [...this.restaurants]) {
      if (!seenRestaurants.has(restaurantId)) {
        entry.node.remove();
        this.restaurants.delete(restaurantId);
      }
    }
    this.hasData = true;
    this.root.setAttribute("aria-busy", "false");
  }

  applyRestaurant(restaurant) {
    const { restaurant_id: id } = restaurant;
    let entry = this.restaurants.get(id);
    if (!entry) {
      entry = { restaurant, node: this.restaurantNode(id) };
      this.restaurants.set(id, entry);
      this.insertSorted(this.root, entry.node, "restaurantId", id);
    }
    entry.restaurant = { ...entry.restaurant, ...restaurant };
    const open = entry.restaurant.open !== false;
    entry.node.dataset.open = String(open);
    entry.node.querySelector(".restaurant-name").textContent = entry.restaurant.name || id;
    entry.node.querySelector(".closed-note").hidden = open;
    for (const { item, node } of this.items.values()) {
      if (item.restaurant_id === id) this.updateButton(node, item);
    }
  }

  applyItem(item, { highlight = true } = {}) {
    const previous = this.items.get(item.item_id);
    if (!this.restaurants.has(item.restaurant_id)) {
      this.applyRestaurant({ restaurant_id: item.restaurant_id, name: item.restaurant_id });
    }
    const node = previous ? previous.node : this.itemNode(item);
    this.items.set(item.item_id, { item, node });
    this.place(node, item);
    node.querySelector(".item-name").textContent = item.name;
    node.querySelector(".item-desc").textContent = item.description || "";
    node.dataset.available = String(item.available !== false);
    const price = node.querySelector(".price");
    price.textContent = money(item.price_cents, item.currency);
    price.dataset.priceCents = String(item.price_cents);
    this.updateButton(node, item);
    if (highlight && previous && previous.item.price_cents !== item.price_cents) {
      const old = money(previous.item.price_cents, previous.item.currency);
      node.querySelector(".was").textContent = `was ${old}`;
      flash(node, price);
    }
  }

  removeItem({ item_id: itemId }) {
    const entry = this.items.get(itemId);
    if (!entry) return;
    this.items.delete(itemId);
    const list = entry.node.parentElement;
    entry.node.remove();
    if (list && !list.children.length) list.closest(".category").remove();
  }

  updateButton(node, item) {
    const restaurant = this.restaurant(item.restaurant_id);
    const orderable = item.available !== false && (!restaurant || restaurant.open !== false);
    const button = node.querySelector("button.add");
    button.disabled = !orderable;
    button.setAttribute("aria-label", orderable ? `Add ${item.name} to cart` : `${item.name} is unavailable`);
    node.querySelector(".unavailable-note").hidden = item.available !== false;
  }

  /** Puts the item in its restaurant's category list, moving it there if its category changed. */
  place(node, item) {
    const restaurantNode = this.restaurants.get(item.restaurant_id).node;
    const category = item.category || "Other";
    let block = [...restaurantNode.querySelectorAll(".category")].find((c) => c.dataset.category === category);
    if (!block) {
      block = el("section", { class: "category", "data-category": category }, el("h3", { text: category }));
      block.append(el("ul", { class: "items" }));
      restaurantNode.querySelector(".categories").append(block);
    }
    const list = block.querySelector("ul");
    if (node.parentElement === list) return;
    const oldList = node.parentElement;
    this.insertSorted(list, node, "itemId", item.item_id);
    if (oldList && !oldList.children.length) oldList.closest(".category").remove();
  }

  insertSorted(parent, node, key, value) {
    const after = [...parent.children].find((child) => child.dataset[key] > value);
    parent.insertBefore(node, after || null);
  }

  restaurantNode(id) {
    const heading = `restaurant-${id}`;
    return el(
      "section",
      { class: "restaurant", "data-restaurant-id": id, "aria-labelledby": heading },
      el(
        "h2",
        { id: heading },
        el("span", { class: "restaurant-name", text: id }),
        el("span", { class: "closed-note", text: "Closed now", hidden: true }),
      ),
      el("div", { class: "categories" }),
    );
  }

  itemNode(item) {
    return el(
      "li",
      { class: "item", "data-item-id": item.item_id },
      el(
        "div",
        { class: "item-text" },
        el("h4", { class: "item-name" }),
        el("p", { class: "item-desc" }),
        el("p", { class: "unavailable-note", text: "Unavailable right now", hidden: true }),
      ),
      el(
        "div",
        { class: "item-buy" },
        el("span", { class: "price" }),
        el("span", { class: "was" }),
        el("button", { type: "button", class: "add", onclick: () => this.onAdd(this.item(item.item_id)) }, "Add"),
      ),
    );
  }
}

function flash(node, price) {
  node.dataset.changedAt = String(Date.now());
  price.classList.remove("changed");
  node.classList.remove("price-changed");
  void price.offsetWidth; // restart the animation when the price moves again within the highlight
  price.classList.add("changed");
  node.classList.add("price-changed");
  clearTimeout(node.flashTimer);
  node.flashTimer = setTimeout(() => {
    price.classList.remove("changed");
    node.classList.remove("price-changed");
    node.querySelector(".was").textContent = "";
  }, HIGHLIGHT_MS);
}
