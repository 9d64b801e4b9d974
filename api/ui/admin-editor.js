// Editing one item (price, availability, details), adding and removing items. Every change carries the
// version the admin was looking at (`expected_version`), so a change made meanwhile by someone else is
// refused by the API instead of silently overwritten.

import { showHistory } from "./admin-activity.js";
import { clearErrors, formatPrice, parsePrice, publish, showError } from "./admin-forms.js";
import { el } from "./common.js";

export class ItemEditor {
  constructor(state, activity, nodes, { onSignedOut }) {
    Object.assign(this, { state, activity, nodes, onSignedOut });
    this.original = null; // the item as it was when opened (null: adding a new one)
    this.awaitingOwn = null; // item id whose change this editor submitted and waits to see
    nodes.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    nodes.close.addEventListener("click", () => this.close());
    nodes.reload.addEventListener("click", () => this.openExisting(this.original.item_id));
    nodes.remove.addEventListener("click", () => this.askRemove());
    nodes.removeNo.addEventListener("click", () => {
      nodes.removeConfirm.hidden = true;
    });
    nodes.removeYes.addEventListener("click", () => this.remove());
  }

  get editingId() {
    return this.nodes.panel.hidden ? null : this.original ? this.original.item_id : null;
  }

  reset() {
    const { form, conflict, removeConfirm, formError, note } = this.nodes;
    clearErrors(form);
    conflict.hidden = true;
    removeConfirm.hidden = true;
    formError.textContent = "";
    note.textContent = "";
    this.nodes.panel.hidden = false;
    this.nodes.currency.textContent = this.state.currency;
  }

  fillRestaurants(selected) {
    const options = [...this.state.restaurants.values()]
      .sort((a, b) => a.restaurant_id.localeCompare(b.restaurant_id))
      .map((r) => el("option", { value: r.restaurant_id, text: `${r.name} (${r.restaurant_id})` }));
    this.nodes.restaurant.replaceChildren(...options);
    if (selected) this.nodes.restaurant.value = selected;
  }

  openExisting(itemId) {
    const item = this.state.items.get(itemId);
    if (!item) return;
    this.reset();
    this.original = { ...item };
    this.awaitingOwn = null;
    const f = this.nodes;
    f.heading.textContent = `Edit ${item.name}`;
    this.fillRestaurants(item.restaurant_id);
    f.restaurant.disabled = true;
    f.itemId.value = item.item_id;
    f.itemId.readOnly = true;
    f.name.value = item.name;
    f.description.value = item.description || "";
    f.category.value = item.category || "";
    f.price.value = formatPrice(item.base_price_cents ?? item.price_cents, this.state.minor);
    f.priceHelp.textContent =
      item.base_price_cents !== undefined && item.base_price_cents !== item.price_cents
        ? `Customers pay ${formatPrice(item.price_cents, this.state.minor)} with the city's pricing rule.`
        : "";
    f.available.checked = item.available !== false;
    f.remove.hidden = false;
    f.historyHeading.hidden = false;
    if (f.history.dataset.itemId !== itemId) f.history.replaceChildren();
    f.history.dataset.itemId = itemId;
    this.refreshHistory();
    this.onOpened(itemId);
  }

  openNew(restaurantId) {
    this.reset();
    this.original = null;
    const f = this.nodes;
    f.heading.textContent = "Add an item";
    this.fillRestaurants(restaurantId);
    f.restaurant.disabled = false;
    f.itemId.readOnly = false;
    for (const input of [f.itemId, f.name, f.description, f.category, f.price]) input.value = "";
    f.priceHelp.textContent = "";
    f.available.checked = true;
    f.remove.hidden = true;
    f.historyHeading.hidden = true;
    f.history.replaceChildren();
    delete f.history.dataset.itemId;
    this.onOpened(null);
    f.itemId.focus();
  }

  onOpened() {}

  close() {
    this.nodes.panel.hidden = true;
    this.original = null;
    this.onOpened(null);
  }

  refreshHistory(expectEventId = null) {
    showHistory(this.nodes.history, {
      token: this.state.token,
      city: this.state.city,
      itemId: this.original.item_id,
      currency: this.state.currency,
      expectEventId,
    });
  }

  /** A live change of an item; the open form is never overwritten under the admin's hands. */
  itemChanged(item) {
    if (this.awaitingOwn === item.item_id && (!this.original || item.version > this.original.version)) {
      this.openExisting(item.item_id);
      this.nodes.note.textContent = `Saved: version ${item.version} is live.`;
      return;
    }
    if (this.editingId === item.item_id && item.version !== this.original.version) {
      this.nodes.note.textContent =
        `Someone else changed this item while it was open (now version ${item.version}). ` +
        "Saving now will be refused; reload to see their change.";
    }
  }

  itemRemoved(itemId) {
    if (this.editingId === itemId) {
      this.close();
    }
  }

  /** The events for what the admin changed: the narrowest event that says it. */
  changeEvents(values) {
    const { city } = this.state;
    const base = { city, restaurant_id: values.restaurant_id, item_id: values.item_id };
    const upsert = {
      type: "item.upserted",
      ...base,
      name: values.name,
      description: values.description,
      category: values.category,
      available: values.available,
      price_cents: values.price_cents,
    };
    const was = this.original;
    if (!was) return [upsert];
    const expected = { expected_version: was.version };
    const detailsChanged =
      values.name !== was.name || values.description !== (was.description || "") || values.category !== (was.category || "");
    const priceChanged = values.price_cents !== (was.base_price_cents ?? was.price_cents);
    const availabilityChanged = values.available !== (was.available !== false);
    if (detailsChanged || (priceChanged && availabilityChanged)) return [{ ...upsert, ...expected }];
    if (priceChanged) return [{ type: "price.set", ...base, price_cents: values.price_cents, ...expected }];
    if (availabilityChanged) {
      return [{ type: "item.availability_set", ...base, available: values.available, ...expected }];
    }
    return [];
  }

  async save() {
    const f = this.nodes;
    clearErrors(f.form);
    f.formError.textContent = "";
    f.conflict.hidden = true;
    const values = {
      restaurant_id: f.restaurant.value,
      item_id: f.itemId.value.trim(),
      name: f.name.value,
      description: f.description.value,
      category: f.category.value,
      available: f.available.checked,
      price_cents: parsePrice(f.price.value, this.state.minor),
    };
    if (values.price_cents === null) {
      showError(f.form, f.formError, { field: "price_cents", message: "Enter a price like 12.50." });
      return;
    }
    if (!this.original && this.state.items.has(values.item_id)) {
      showError(f.form, f.formError, { field: "item_id", message: "An item with this id exists already." });
      return;
    }
    const events = this.changeEvents(values);
    if (!events.length) {
      f.formError.textContent = "Nothing to save: no field changed.";
      return;
    }
    const label = `${events[0].type} ${values.item_id}`;
    await this.submit(events, label, values.item_id, false);
  }

  askRemove() {
    const f = this.nodes;
    f.removeQuestion.textContent = `Remove ${this.original.name} from the menu of every customer?`;
    f.removeConfirm.hidden = false;
    f.removeYes.focus();
  }

  async remove() {
    const was = this.original;
    this.nodes.removeConfirm.hidden = true;
    const event = {
      type: "item.removed",
      city: this.state.city,
      restaurant_id: was.restaurant_id,
      item_id: was.item_id,
      expected_version: was.version,
    };
    await this.submit([event], `item.removed ${was.item_id}`, was.item_id, true);
  }

  async submit(events, label, itemId, removal) {
    const f = this.nodes;
    const startedAt = performance.now();
    f.save.disabled = true;
    this.awaitingOwn = itemId; // before sending: the change can reach the live stream before the answer
    try {
      const eventIds = await publish(this.state.token, events);
      if (this.awaitingOwn === itemId) f.note.textContent = "Published; waiting for the workers to apply it…";
      this.activity.track({
        label,
        eventIds,
        itemId,
        removal,
        startedAt,
        onApplied: () => {
          if (this.editingId === itemId) this.refreshHistory(eventIds[eventIds.length - 1]);
        },
      });
    } catch (error) {
      this.awaitingOwn = null;
      this.refused(error);
    } finally {
      f.save.disabled = false;
    }
  }

  refused(error) {
    const f = this.nodes;
    if (error.status === 401 || error.status === 403) {
      this.onSignedOut(error.message);
    } else if (error.status === 409 && error.code === "version_conflict") {
      this.showConflict(error.message);
    } else {
      showError(f.form, f.formError, error);
    }
  }

  showConflict(message) {
    this.nodes.conflictDetail.textContent = `The API said: ${message}.`;
    this.nodes.conflict.hidden = false;
    this.nodes.reload.focus();
  }
}
