// Alerts: the live feed (server-sent events, no reload), severity, meter, evidence snapshot, the seed 004
// error code with its meaning, and acknowledge / resolve for operators and admins only.
import { type Alert, api, type Page, post, qs, roleAtLeast } from "../api.ts";
import { errorCodeOf, levelTone, SEED_004_ERROR_CODES } from "../codes.ts";
import { announce, badge, clear, errorBox, fmtNumber, fmtTime, h, section, table } from "../dom.ts";
import { onAlert, onStreamState } from "../live.ts";
import { type PageContext, pageLife } from "./page.ts";

export const ALERT_PAGE_ROWS = 50;
/** Cards kept on the page; older ones are a "load more" away (the DOM never grows without bound). */
export const ALERT_CARDS_MAX = 500;

function stateTone(state: Alert["state"]) {
  return state === "open" ? "bad" : state === "acknowledged" ? "warn" : "ok";
}

export function renderAlerts(ctx: PageContext): () => void {
  const life = pageLife();
  const canAct = roleAtLeast(ctx.role, "operator");
  const filter = h(
    "select",
    { id: "alert-state" },
    [
      ["open", "open"],
      ["acknowledged", "acknowledged"],
      ["resolved", "resolved"],
      ["", "all"],
    ].map(([v, t]) => h("option", { value: v }, t)),
  );
  const initial = ctx.params.get("state");
  filter.value = initial ?? "";
  const live = h("span", { class: "hint" });
  life.add(
    onStreamState((s) => {
      live.textContent =
        s === "live" ? "Live: new alerts appear here as they arrive." : `Live stream ${s}: new alerts will appear once it is back.`;
    }),
  );
  const list = h("ol", { class: "alerts", id: "alert-feed", "aria-label": "Alerts, newest first" });
  const status = h("div", { "aria-live": "polite" });
  const more = h("button", { type: "button", hidden: true }, "Load older alerts");
  ctx.main.append(
    h("h1", {}, "Alerts"),
    section(
      "Live feed",
      h(
        "form",
        { class: "filters", "aria-label": "Filter alerts" },
        h("div", { class: "field" }, h("label", { for: "alert-state" }, "State"), filter),
        live,
      ),
      canAct ? null : h("p", { class: "hint" }, `Signed in as ${ctx.role}: acknowledging and resolving needs the operator role.`),
      status,
      list,
      more,
    ),
    section(
      "Error codes (seed 004)",
      table(
        ["Code", "Name", "Meaning"],
        Object.entries(SEED_004_ERROR_CODES).map(([code, c]) => [h("code", {}, code), c.name, c.meaning]),
        "Seed 004 error codes",
      ),
    ),
  );

  const cards = new Map<number, HTMLElement>();
  const matches = (a: Alert) => filter.value === "" || a.state === filter.value;

  function card(a: Alert): HTMLElement {
    const code = errorCodeOf(a.type, a.snapshot);
    const meaning = code === null ? null : SEED_004_ERROR_CODES[code];
    const actions = h("div", { class: "actions" });
    if (canAct && a.state !== "resolved") {
      if (a.state === "open")
        actions.append(
          h("button", { type: "button", class: "primary", "data-action": "ack", onclick: () => act(a, "ack") }, "Acknowledge"),
        );
      actions.append(h("button", { type: "button", "data-action": "resolve", onclick: () => act(a, "resolve") }, "Resolve"));
    }
    const snapshot = Object.entries(a.snapshot);
    const latency = a.received_ms - a.detected_ms;
    return h(
      "li",
      { class: `alert alert-${a.state}`, "data-alert-id": a.alert_id, "data-type": a.type, "data-state": a.state },
      h(
        "div",
        { class: "alert-head" },
        badge(a.level, levelTone(a.level), "severity"),
        h("strong", { class: "alert-type" }, a.type),
        a.aggregated_count > 1 ? badge(`×${a.aggregated_count}`, "info", "aggregated anomalies") : null,
        badge(a.state, stateTone(a.state), "state"),
        a.verified ? badge("signature verified", "ok") : badge("head-end raised", "muted"),
        h("span", { class: "alert-id" }, `#${a.alert_id}`),
      ),
      h(
        "p",
        { class: "alert-meta" },
        "Meter ",
        a.meter_id === null ? "—" : h("a", { href: `#/meters/${encodeURIComponent(a.meter_id)}` }, a.meter_id),
        ` · concentrator ${a.dcu_id ?? "—"} · detected ${fmtTime(a.detected_ms)} · at the head-end ${
          latency >= 0 ? `${fmtNumber(latency)} ms later` : fmtTime(a.received_ms)
        }`,
      ),
      code === null || meaning === null || meaning === undefined
        ? null
        : h("p", { class: "error-code" }, h("code", {}, code), ` ${meaning.name}: ${meaning.meaning}`),
      snapshot.length === 0
        ? null
        : h(
            "details",
            {},
            h("summary", {}, "Evidence snapshot"),
            h(
              "dl",
              { class: "facts" },
              snapshot.map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))]),
            ),
          ),
      a.acknowledged_by === null ? null : h("p", { class: "hint" }, `Acknowledged by ${a.acknowledged_by} at ${fmtTime(a.acknowledged_ms)}`),
      a.resolved_by === null ? null : h("p", { class: "hint" }, `Resolved by ${a.resolved_by} at ${fmtTime(a.resolved_ms)}`),
      actions,
    );
  }

  function put(a: Alert, where: "top" | "bottom" | "replace"): void {
    const old = cards.get(a.alert_id);
    if (!matches(a)) {
      old?.remove();
      cards.delete(a.alert_id);
      return;
    }
    const el = card(a);
    if (old !== undefined) old.replaceWith(el);
    else if (where === "bottom") list.append(el);
    else list.prepend(el);
    cards.set(a.alert_id, el);
    empty();
    while (cards.size > ALERT_CARDS_MAX) {
      const last = list.lastElementChild as HTMLElement | null;
      if (last === null) break;
      cards.delete(Number(last.dataset.alertId));
      last.remove();
      more.hidden = false;
    }
  }

  function empty(): void {
    const note = list.querySelector(".empty");
    if (cards.size > 0) note?.remove();
    else if (note === null) list.append(h("li", { class: "empty" }, "No alert in this state."));
  }

  async function act(a: Alert, action: "ack" | "resolve"): Promise<void> {
    clear(status);
    try {
      const updated = await post<Alert>(`/api/alerts/${a.alert_id}/${action}`);
      put(updated, "replace");
      announce(`Alert ${a.alert_id} ${action === "ack" ? "acknowledged" : "resolved"}`);
    } catch (error) {
      status.append(errorBox(error));
    }
  }

  let cursor: string | null = null;
  async function load(reset: boolean): Promise<void> {
    if (reset) {
      cursor = null;
      cards.clear();
      clear(list);
    }
    try {
      const page = await api<Page<Alert>>(`/api/alerts${qs({ state: filter.value, cursor, limit: ALERT_PAGE_ROWS })}`);
      if (!life.alive()) return;
      for (const a of page.items) if (!cards.has(a.alert_id)) put(a, "bottom");
      cursor = page.next_cursor;
      more.hidden = cursor === null;
      empty();
    } catch (error) {
      if (life.alive()) status.append(errorBox(error));
    }
  }
  filter.addEventListener("change", () => {
    history.replaceState(null, "", `#/alerts${qs({ state: filter.value })}`);
    void load(true);
  });
  more.addEventListener("click", () => void load(false));

  life.add(
    onAlert((e) => {
      if (e.kind === "alert") {
        put(e.alert, "top");
        const el = cards.get(e.alert.alert_id);
        el?.classList.add("fresh");
        announce(`New ${e.alert.level} alert ${e.alert.type} on ${e.alert.meter_id ?? e.alert.dcu_id ?? "the head-end"}`);
      } else put(e.alert, "replace");
    }),
  );
  void load(true);
  return life.leave;
}
