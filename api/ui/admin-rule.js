// The city's pricing rule: a multiplier on every base price, optionally from and until given times.

import { clearErrors, localToUtc, publish, showError, utcToLocal, when } from "./admin-forms.js";
import { api } from "./common.js";

export class RuleEditor {
  constructor(state, activity, nodes, { onSignedOut }) {
    Object.assign(this, { state, activity, nodes, onSignedOut });
    this.version = null;
    nodes.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    nodes.clear.addEventListener("click", () => this.submit(null));
    nodes.reload.addEventListener("click", () => this.load());
  }

  async load() {
    const f = this.nodes;
    clearErrors(f.form);
    f.formError.textContent = "";
    f.conflict.hidden = true;
    const pricing = await this.fetch();
    this.rule = pricing.rule;
    this.describe(pricing);
    const rule = pricing.rule;
    f.multiplier.value = rule ? String(rule.multiplier) : "";
    f.name.value = rule ? rule.name || "" : "";
    f.effective.value = rule ? utcToLocal(rule.effective_at) : "";
    f.until.value = rule ? utcToLocal(rule.until) : "";
  }

  fetch() {
    return api(`/v1/cities/${encodeURIComponent(this.state.city)}/pricing`);
  }

  describe(pricing) {
    this.version = pricing.version;
    const rule = pricing.rule;
    if (!rule) {
      this.nodes.current.textContent = "No rule: customers pay base prices.";
      return;
    }
    const window = [rule.effective_at && `from ${when(rule.effective_at)}`, rule.until && `until ${when(rule.until)}`];
    this.nodes.current.textContent =
      `×${rule.multiplier}${rule.name ? ` “${rule.name}”` : ""} ${window.filter(Boolean).join(" ")} — ` +
      (pricing.active ? "in effect now." : "not in effect now.");
  }

  /** Items were re-priced: perhaps the rule started or ended (the clock moves its version too). The form
   *  keeps what the admin typed; only a rule that is still the one shown may take the newer version. */
  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      const pricing = await this.fetch().catch(() => null);
      if (pricing && JSON.stringify(pricing.rule) === JSON.stringify(this.rule)) this.describe(pricing);
    }, 300);
  }

  save() {
    const f = this.nodes;
    clearErrors(f.form);
    f.formError.textContent = "";
    const text = f.multiplier.value.trim();
    if (!/^\d+(\.\d+)?$/.test(text)) {
      showError(f.form, f.formError, { field: "rule.multiplier", message: "Enter a number like 1.2." });
      return;
    }
    const rule = { multiplier: Number(text) };
    if (f.name.value.trim()) rule.name = f.name.value.trim();
    const effective = localToUtc(f.effective.value);
    const until = localToUtc(f.until.value);
    if (effective) rule.effective_at = effective;
    if (until) rule.until = until;
    return this.submit(rule);
  }

  async submit(rule) {
    const f = this.nodes;
    const event = { type: "pricing.rule_set", city: this.state.city, rule };
    if (this.version !== null) event.expected_version = this.version;
    const startedAt = performance.now();
    try {
      const eventIds = await publish(this.state.token, [event]);
      this.activity.track({
        label: rule ? `pricing.rule_set ×${rule.multiplier}` : "pricing.rule_set (cleared)",
        eventIds,
        startedAt,
        onApplied: () => this.load(),
      });
    } catch (error) {
      if (error.status === 401 || error.status === 403) this.onSignedOut(error.message);
      else if (error.status === 409 && error.code === "version_conflict") {
        f.conflict.hidden = false;
        f.reload.focus();
      } else showError(f.form, f.formError, error);
    }
  }
}
