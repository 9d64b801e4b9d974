// The customer page: a city's live menu, a cart, and checkout with live order status.

import { Cart, renderCart } from "./cart.js";
import { Checkout, TOKEN_KEY } from "./checkout.js";
import { el, loadCities, showConnection, takeTokenFromFragment } from "./common.js";
import { followMenu } from "./live-menu.js";
import { MenuView } from "./menu-view.js";

const CITY_KEY = "feastflow.city";
const $ = (id) => document.getElementById(id);

const token = takeTokenFromFragment(TOKEN_KEY);
const citySelect = $("city");
let session = null;

function startCity(city) {
  if (session) session.stream.close();
  localStorage.setItem(CITY_KEY, city);
  const root = $("menu");
  root.replaceChildren(el("p", { class: "loading", text: "Loading the menu…" }));
  root.setAttribute("aria-busy", "true");
  const cart = new Cart(city);
  const refreshCart = () => {
    $("place-order").disabled = !cart.lines.length;
    renderCart({
      cart,
      menu,
      list: $("cart-lines"),
      total: $("cart-total"),
      counter: $("cart-count"),
      restaurantLabel: $("cart-restaurant"),
      onChange: (itemId, delta) => {
        cart.change(itemId, delta);
        refreshCart();
      },
    });
  };
  const menu = new MenuView(root, {
    onAdd: (item) => {
      cart.add(item);
      refreshCart();
    },
  });
  const firstData = () => root.querySelector(".loading")?.remove();
  const stream = followMenu(city, {
    onSnapshot: (data) => {
      firstData();
      menu.applySnapshot(data);
      refreshCart();
    },
    onItem: (item) => {
      menu.applyItem(item);
      refreshCart();
    },
    onItemRemoved: (removed) => {
      menu.removeItem(removed);
      refreshCart();
    },
    onRestaurant: (restaurant) => {
      menu.applyRestaurant(restaurant);
      refreshCart();
    },
    onState: (state) => showConnection($("connection"), state),
  });
  const previous = session ? session.checkout : null;
  if (previous) previous.finishTracking();
  const checkout = new Checkout({
    city,
    cart,
    menu,
    token: previous ? previous.token : token,
    onCartChanged: refreshCart,
    nodes: checkoutNodes(),
  });
  session = { stream, checkout };
  refreshCart();
}

/** Fresh copies of the checkout's controls, so a city change leaves no listener of the last city behind. */
function checkoutNodes() {
  for (const id of ["place-order", "signin", "signout", "confirm-prices", "keep-shopping", "new-order"]) {
    const node = $(id);
    const copy = node.cloneNode(true);
    node.replaceWith(copy);
  }
  return {
    placeOrder: $("place-order"),
    signin: $("signin"),
    tokenInput: $("customer-token"),
    signout: $("signout"),
    identity: $("identity"),
    who: $("who"),
    message: $("checkout-message"),
    priceConfirm: $("price-confirm"),
    priceChanges: $("price-changes"),
    newTotal: $("new-total"),
    confirmPrices: $("confirm-prices"),
    keepShopping: $("keep-shopping"),
    tracking: $("order-tracking"),
    steps: $("order-steps"),
    statusText: $("order-status"),
    orderLabel: $("order-label"),
    newOrder: $("new-order"),
  };
}

citySelect.addEventListener("change", () => startCity(citySelect.value));
loadCities(citySelect, CITY_KEY)
  .then(() => startCity(citySelect.value))
  .catch((error) => {
    $("menu").replaceChildren(el("p", { class: "message", role: "alert", text: `${error.message}. Reload to retry.` }));
  });
