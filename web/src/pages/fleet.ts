// Fleet overview: live counters, meters paged and filtered on the server (never the whole fleet), and the
// concentrators with their chain heads.
import { api, type Meter, qs, type Stats, sum } from "../api.ts";
import { badge, clear, errorBox, fmtAgo, fmtNumber, h, section, table } from "../dom.ts";
import { onAlert, onStats } from "../live.ts";
import { type PageContext, pageLife } from "./page.ts";

export const FLEET_PAGE_ROWS = 50;
export const FLEET_REFRESH_MS = 1_000;

interface Filters {
  search: string;
  status: string;
  tamper_state: string;
  dcu_id: string;
  transformer_id: string;
}

// Kept across visits: going to a meter and back returns to the same filtered page.
const saved: { filters: Filters; cursors: (string | null)[] } = {
  filters: { search: "", status: "", tamper_state: "", dcu_id: "", transformer_id: "" },
  cursors: [null],
};

interface Concentrator {
  dcu_id: string;
  batch_sign_key_id: string;
  last_batch_id: number | null;
  epoch: number | null;
  last_batch_received_ms: number | null;
  status_ms: number | null;
}

export function counterCards(): { element: HTMLElement; update: (s: Stats) => void } {
  const cells: Record<string, HTMLElement> = {};
  const card = (key: string, label: string) => {
    const value = h("span", { class: "value", "data-counter": key }, "…");
    cells[key] = value;
    return h("div", { class: "counter" }, value, h("span", { class: "label" }, label));
  };
  const element = h(
    "div",
    { class: "counters", role: "group", "aria-label": "Live counters" },
    card("readings_per_s", "readings/s"),
    card("readings", "readings stored"),
    card("meters", "meters online"),
    card("alerts", "open alerts"),
    card("gaps", "gaps"),
    card("rejected", "rejected batches"),
    card("latency", "alert latency p99"),
  );
  const set = (key: string, text: string) => {
    const el = cells[key];
    if (el !== undefined) el.textContent = text;
  };
  return {
    element,
    update: (s) => {
      set("readings_per_s", fmtNumber(s.readings_per_s));
      set("readings", fmtNumber(s.readings_stored_total));
      set("meters", `${fmtNumber(s.meters_online)} / ${fmtNumber(s.meters_total)}`);
      set("alerts", `${fmtNumber(s.alerts_open)}${s.alerts_open_more ? "+" : ""}`);
      set("gaps", fmtNumber(sum(s.gaps_total)));
      set("rejected", fmtNumber(sum(s.batches_rejected_total)));
      set("latency", s.alert_latency_p99_ms === null ? "—" : `${fmtNumber(s.alert_latency_p99_ms, 1)} ms`);
    },
  };
}

function tamperBadge(state: string) {
  return state === "CLEAR" ? badge("CLEAR", "ok") : badge(state, "bad", "tamper state");
}

export function renderFleet(ctx: PageContext): () => void {
  const life = pageLife();
  const counters = counterCards();
  life.add(onStats(counters.update));

  const f = saved.filters;
  const search = h("input", {
    id: "f-search",
    type: "search",
    value: f.search,
    placeholder: "meter id contains…",
    autocomplete: "off",
  });
  const status = h(
    "select",
    { id: "f-status" },
    [
      ["", "any"],
      ["online", "online"],
      ["offline", "offline"],
    ].map(([v, t]) => h("option", { value: v, selected: f.status === v }, t)),
  );
  const tamper = h(
    "select",
    { id: "f-tamper" },
    ["", "CLEAR", "MAG_TAMPER", "NEUTRAL_MISS", "REV_CURRENT", "COVER_OPEN", "BYPASS_SUS", "INJECT_SUS", "TILT", "SIG_FAIL", "FW_ROLLBACK"].map(
      (v) => h("option", { value: v, selected: f.tamper_state === v }, v === "" ? "any" : v),
    ),
  );
  const dcu = h("select", { id: "f-dcu" }, h("option", { value: "" }, "any"));
  const transformer = h("input", {
    id: "f-transformer",
    type: "text",
    value: f.transformer_id,
    placeholder: "e.g. TR-7",
    autocomplete: "off",
  });
  const field = (id: string, label: string, control: HTMLElement) =>
    h("div", { class: "field" }, h("label", { for: id }, label), control);
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter meters" },
    field("f-search", "Search", search),
    field("f-status", "Status", status),
    field("f-tamper", "Tamper state", tamper),
    field("f-dcu", "Concentrator", dcu),
    field("f-transformer", "Transformer", transformer),
  );
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    restart();
  });

  const results = h("div", { "aria-live": "polite", "aria-busy": "false" });
  const prev = h("button", { type: "button", disabled: true }, "← Previous");
  const next = h("button", { type: "button", disabled: true }, "Next →");
  const pageInfo = h("span", { class: "page-info" });
  const pager = h("div", { class: "pager" }, prev, pageInfo, next);
  const concentrators = h("div", {}, h("p", { class: "hint" }, "Loading…"));

  ctx.main.append(
    h("h1", {}, "Fleet"),
    counters.element,
    section("Meters", filters, results, pager),
    section("Concentrators", concentrators),
  );

  let timer: number | null = null;
  const restart = () => {
    saved.filters = {
      search: search.value.trim(),
      status: status.value,
      tamper_state: tamper.value,
      dcu_id: dcu.value,
      transformer_id: transformer.value.trim(),
    };
    saved.cursors = [null];
    void load();
  };
  const soon = () => {
    if (timer !== null) window.clearTimeout(timer);
    timer = window.setTimeout(restart, 300);
  };
  search.addEventListener("input", soon);
  transformer.addEventListener("input", soon);
  for (const s of [status, tamper, dcu]) s.addEventListener("change", restart);
  life.add(() => {
    if (timer !== null) window.clearTimeout(timer);
  });

  let loading = 0;
  async function load(): Promise<void> {
    const ticket = ++loading;
    results.setAttribute("aria-busy", "true");
    const cursor = saved.cursors[saved.cursors.length - 1] ?? null;
    try {
      const page = await api<{ items: Meter[]; next_cursor: string | null; total: number }>(
        `/api/meters${qs({ ...saved.filters, cursor, limit: FLEET_PAGE_ROWS })}`,
      );
      if (!life.alive() || ticket !== loading) return;
      clear(results);
      const first = (saved.cursors.length - 1) * FLEET_PAGE_ROWS;
      if (page.items.length === 0) {
        results.append(h("p", { class: "empty" }, "No meter matches these filters."));
      } else {
        results.append(
          table(
            ["Meter", "Concentrator", "Status", "Last reading", "Time quality", "Tamper", "Firmware"],
            page.items.map((m) => [
              h("a", { href: `#/meters/${encodeURIComponent(m.meter_id)}`, "data-meter": m.meter_id }, m.meter_id),
              m.dcu_id ?? "—",
              m.online ? badge("online", "ok") : badge("offline", "muted"),
              h("span", { title: m.last_reading_ms === null ? "" : new Date(m.last_reading_ms).toISOString() }, fmtAgo(m.last_reading_ms)),
              m.time_quality ?? "—",
              tamperBadge(m.tamper_state),
              m.firmware_version === null ? "—" : `${m.firmware_version} (bank ${m.firmware_bank ?? "?"})`,
            ]),
            "Meters",
          ),
        );
      }
      pageInfo.textContent =
        page.items.length === 0
          ? `0 of ${fmtNumber(page.total)}`
          : `${fmtNumber(first + 1)}–${fmtNumber(first + page.items.length)} of ${fmtNumber(page.total)}`;
      prev.disabled = saved.cursors.length <= 1;
      next.disabled = page.next_cursor === null;
      next.onclick = () => {
        saved.cursors.push(page.next_cursor);
        void load();
      };
      prev.onclick = () => {
        saved.cursors.pop();
        void load();
      };
    } catch (error) {
      if (!life.alive()) return;
      clear(results);
      results.append(errorBox(error));
    } finally {
      results.setAttribute("aria-busy", "false");
    }
  }

  async function loadConcentrators(): Promise<void> {
    try {
      const { items } = await api<{ items: Concentrator[] }>("/api/concentrators");
      if (!life.alive()) return;
      for (const c of items)
        dcu.append(h("option", { value: c.dcu_id, selected: saved.filters.dcu_id === c.dcu_id }, c.dcu_id));
      clear(concentrators);
      concentrators.append(
        items.length === 0
          ? h("p", { class: "empty" }, "No concentrator provisioned yet.")
          : table(
              ["Concentrator", "batch_sign key", "Chain head", "Epoch", "Last batch", "Status pack"],
              items.map((c) => [
                h(
                  "button",
                  {
                    type: "button",
                    class: "link-button",
                    title: "Show this concentrator's meters",
                    onclick: () => {
                      dcu.value = c.dcu_id;
                      restart();
                    },
                  },
                  c.dcu_id,
                ),
                h("code", {}, c.batch_sign_key_id),
                c.last_batch_id === null ? "—" : `batch ${c.last_batch_id}`,
                c.epoch ?? "—",
                fmtAgo(c.last_batch_received_ms),
                fmtAgo(c.status_ms),
              ]),
              "Concentrators",
            ),
      );
    } catch (error) {
      if (!life.alive()) return;
      clear(concentrators);
      concentrators.append(errorBox(error));
    }
  }

  // A tamper alert changes a meter's tamper state: refresh the page being looked at.
  // At most one refresh per FLEET_REFRESH_MS however many alerts arrive (a mass-tamper event).
  let refresh: number | null = null;
  life.add(
    onAlert((e) => {
      if (e.kind !== "alert" || e.alert.meter_id === null || refresh !== null) return;
      refresh = window.setTimeout(() => {
        refresh = null;
        void load();
      }, FLEET_REFRESH_MS);
    }),
  );
  life.add(() => {
    if (refresh !== null) window.clearTimeout(refresh);
  });
  void load();
  void loadConcentrators();
  return life.leave;
}
