// Sending admin events and showing the API's verdict where it belongs: a validation message next to the
// field it names, a version conflict as an explanation with a way to reload, anything else at the form.

import { api } from "./common.js";

/** Posts one event (or several, all or nothing) and returns the event ids the log acknowledged. */
export async function publish(token, events) {
  const body = events.length === 1 ? events[0] : { events };
  const answer = await api("/v1/admin/events", { method: "POST", token, body });
  return answer.event_ids;
}

export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

/** The API names fields by their path in the request (`price_cents`, `rule.until`, `events[0].name`). */
function fieldPath(field) {
  return field.replace(/^events\[\d+\]\./, "");
}

/** Shows `error` next to its field when the form has one, else in `formError`; returns where it went. */
export function showError(form, formError, error) {
  const path = error.field ? fieldPath(error.field) : null;
  const block = path ? form.querySelector(`[data-for="${CSS.escape(path)}"]`) : null;
  if (block) {
    const control = block.querySelector("input, select, textarea");
    block.querySelector(".field-error").textContent = error.message;
    control.setAttribute("aria-invalid", "true");
    control.focus();
    return "field";
  }
  formError.textContent = error.field ? `${error.field}: ${error.message}` : error.message;
  return "form";
}

/** A price typed in major units ("12.50") as minor units, or null when it is not a number. */
export function parsePrice(text, minorUnits) {
  const cleaned = text.trim().replace(/,/g, "");
  if (!/^\d+(\.\d+)?$/.test(cleaned)) return null;
  return Math.round(Number(cleaned) * minorUnits);
}

export function formatPrice(cents, minorUnits) {
  const digits = Math.round(Math.log10(minorUnits));
  return (cents / minorUnits).toFixed(digits);
}

/** A `datetime-local` value (the admin's own time zone) as RFC 3339 UTC, or null when empty. */
export function localToUtc(value) {
  return value ? new Date(value).toISOString() : null;
}

export function utcToLocal(value) {
  if (!value) return "";
  const moment = new Date(value);
  const shifted = new Date(moment.getTime() - moment.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 19);
}

export function when(value) {
  return value ? new Date(value).toLocaleString() : "";
}
