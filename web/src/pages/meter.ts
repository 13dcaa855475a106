// One meter: inventory and state, registers, the load chart over a chosen range, the sealed event log with
// a verification verdict per record, firmware and tamper history, and the evidence bundle export.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { type Alert, api, type Meter, type Page, type Reading, qs, request } from "../api.ts";
import { DLMS_UNITS, FIRMWARE_EVENT_TYPES, levelTone, OBIS_NAMES, TAMPER_TYPES } from "../codes.ts";
import { announce, append, badge, clear, errorBox, fmtAgo, fmtNumber, fmtTime, h, section, table } from "../dom.ts";
import { onAlert } from "../live.ts";
import { type PageContext, pageLife } from "./page.ts";

/** Readings drawn at most per chart (pages of 1,000 from the API); a wider range says it was cut. */
export const CHART_ROWS_MAX = 10_000;
export const EVENT_LOG_PAGE_ROWS = 100;
/** Register units (e.g. Wh) a load point spans at least, so whole-unit steps do not dominate it. */
export const LOAD_SPAN_UNITS_MIN = 20;
const HOUR_MS = 3_600_000;
const RANGES: readonly { key: string; label: string; ms: number }[] = [
  { key: "24h", label: "24 hours", ms: 24 * HOUR_MS },
  { key: "7d", label: "7 days", ms: 7 * 24 * HOUR_MS },
  { key: "30d", label: "30 days", ms: 30 * 24 * HOUR_MS },
];

interface MeterDetail extends Meter {
  event_seal_key_provisioned: boolean;
  open_alerts: Alert[];
}

interface LogItem {
  seq: number;
  type: string;
  level: string;
  timestamp_ms: number;
  time_quality: string;
  dcu_id: string | null;
  received_ms: number;
  snapshot: Record<string, unknown> | null;
  digest: string | null;
  signature: "valid" | "invalid" | "no_key" | "undecodable";
  chain: "linked" | "genesis" | "broken" | "predecessor_missing";
  ok: boolean;
  problem: string | null;
}

function scaled(r: Reading): number {
  return r.value * 10 ** r.scaler;
}

function isEnergy(obis: string, unit: number): boolean {
  // IEC 62056-6-1: value group D = 8 is a time integral (an energy register), in Wh / varh / VAh.
  return obis.split(".")[3] === "8" && (unit === 30 || unit === 31 || unit === 32);
}

function snapshotText(snapshot: Record<string, unknown> | null): string {
  if (snapshot === null) return "";
  return Object.entries(snapshot)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(", ");
}

function toLocalInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

export function renderMeter(ctx: PageContext, meterId: string): () => void {
  const life = pageLife();
  const heading = h("h1", {}, `Meter ${meterId}`);
  const summary = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const registers = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const firmware = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const tamper = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const alerts = h("div", {});
  const log = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const moreLog = h("button", { type: "button", hidden: true }, "Load older records");

  // Range and register of the chart (and of the export).
  const rangeSel = h(
    "select",
    { id: "chart-range" },
    RANGES.map((r) => h("option", { value: r.key }, `last ${r.label} of readings`)),
    h("option", { value: "custom" }, "custom range"),
  );
  const obisSel = h("select", { id: "chart-obis" });
  const fromIn = h("input", { id: "chart-from", type: "datetime-local", hidden: true });
  const toIn = h("input", { id: "chart-to", type: "datetime-local", hidden: true });
  const fromLabel = h("label", { for: "chart-from", hidden: true }, "From");
  const toLabel = h("label", { for: "chart-to", hidden: true }, "To");
  const chartBox = h("div", { class: "chart", id: "load-chart", role: "img", "aria-label": "Load chart" });
  const chartNote = h("p", { class: "hint", "aria-live": "polite" });
  const exportBtn = h("button", { type: "button", class: "primary", id: "export-bundle" }, "Export evidence bundle");
  const exportNote = h("div", { "aria-live": "polite" });
  const controls = h(
    "form",
    { class: "filters", "aria-label": "Chart range" },
    h("div", { class: "field" }, h("label", { for: "chart-obis" }, "Register"), obisSel),
    h("div", { class: "field" }, h("label", { for: "chart-range" }, "Range"), rangeSel),
    h("div", { class: "field" }, fromLabel, fromIn),
    h("div", { class: "field" }, toLabel, toIn),
  );
  controls.addEventListener("submit", (e) => e.preventDefault());

  ctx.main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Fleet"), " / ", meterId),
    heading,
    h("div", { class: "grid-2" }, section("State", summary), section("Registers", registers)),
    section("Load", controls, chartBox, chartNote, h("div", { class: "actions" }, exportBtn), exportNote),
    h("div", { class: "grid-2" }, section("Firmware banks", firmware), section("Tamper state history", tamper)),
    section("Open alerts", alerts),
    section("Sealed event log", log, moreLog),
  );

  let meter: MeterDetail | null = null;
  let plot: uPlot | null = null;
  life.add(() => plot?.destroy());

  const anchorMs = () => (meter?.last_reading_ms ?? Date.now()) + 1;
  function range(): { fromMs: number; toMs: number } {
    if (rangeSel.value === "custom") {
      const fromMs = Date.parse(fromIn.value);
      const toMs = Date.parse(toIn.value);
      if (Number.isFinite(fromMs) && Number.isFinite(toMs) && toMs > fromMs) return { fromMs, toMs };
    }
    const preset = RANGES.find((r) => r.key === rangeSel.value) ?? RANGES[0]!;
    return { fromMs: anchorMs() - preset.ms, toMs: anchorMs() };
  }

  async function loadMeter(): Promise<void> {
    try {
      meter = await api<MeterDetail>(`/api/meters/${encodeURIComponent(meterId)}`);
    } catch (error) {
      if (!life.alive()) return;
      clear(summary);
      summary.append(errorBox(error));
      return;
    }
    if (!life.alive()) return;
    const m = meter;
    clear(summary);
    const dl = (pairs: [string, Node | string][]) =>
      h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    summary.append(
      dl([
        ["Status", m.online ? badge("online", "ok") : badge("offline", "muted")],
        ["Tamper state", m.tamper_state === "CLEAR" ? badge("CLEAR", "ok") : badge(m.tamper_state, "bad")],
        ["Last reading", `${fmtTime(m.last_reading_ms)} (${fmtAgo(m.last_reading_ms)})`],
        ["Last seq", m.last_seq === null ? "—" : String(m.last_seq)],
        ["Time quality", m.time_quality ?? "—"],
        ["Concentrator", m.dcu_id ?? "—"],
        ["Transformer", m.transformer_id ?? "—"],
        ["Model / group", `${m.model ?? "—"} / ${m.group ?? "—"}`],
        [
          "event_seal key",
          m.event_seal_key_provisioned ? badge("provisioned", "ok") : badge("not provisioned", "bad"),
        ],
      ]),
    );
    clear(alerts);
    alerts.append(
      m.open_alerts.length === 0
        ? h("p", { class: "empty" }, "No open alert.")
        : table(
            ["Alert", "Type", "Level", "Detected"],
            m.open_alerts.map((a) => [
              h("a", { href: `#/alerts?alert=${a.alert_id}` }, `#${a.alert_id}`),
              a.type,
              badge(a.level, levelTone(a.level)),
              fmtTime(a.detected_ms),
            ]),
            "Open alerts",
          ),
    );
    renderFirmware([]);
    await loadRegisters();
    await loadChart();
  }

  async function loadRegisters(): Promise<void> {
    clear(registers);
    const m = meter;
    if (m === null || m.last_reading_ms === null) {
      registers.append(h("p", { class: "empty" }, "No reading received yet."));
      obisSel.append(h("option", { value: "1.0.1.8.0.255" }, OBIS_NAMES["1.0.1.8.0.255"]!));
      return;
    }
    try {
      const page = await api<Page<Reading>>(
        `/api/meters/${encodeURIComponent(meterId)}/readings${qs({ from: m.last_reading_ms, to: m.last_reading_ms + 1, limit: 100 })}`,
      );
      if (!life.alive()) return;
      const latest = new Map<string, Reading>();
      for (const r of page.items) latest.set(r.obis, r);
      clear(obisSel);
      for (const obis of latest.keys())
        obisSel.append(h("option", { value: obis }, `${OBIS_NAMES[obis] ?? obis} (${obis})`));
      registers.append(
        table(
          ["OBIS", "Register", "Value", "At"],
          [...latest.values()].map((r) => [
            h("code", {}, r.obis),
            OBIS_NAMES[r.obis] ?? "—",
            h("span", { class: "num" }, `${fmtNumber(scaled(r), 3)} ${DLMS_UNITS[r.unit] ?? `unit ${r.unit}`}`),
            `${fmtTime(r.timestamp_ms)} (seq ${r.seq})`,
          ]),
          "Registers",
        ),
      );
    } catch (error) {
      if (life.alive()) registers.append(errorBox(error));
    }
  }

  let chartTicket = 0;
  async function loadChart(): Promise<void> {
    const ticket = ++chartTicket;
    const obis = obisSel.value || "1.0.1.8.0.255";
    const { fromMs, toMs } = range();
    exportBtn.dataset.from = String(fromMs);
    exportBtn.dataset.to = String(toMs);
    chartNote.textContent = "Loading readings…";
    const rows: Reading[] = [];
    let cursor: string | null = null;
    let cut = false;
    try {
      do {
        const page: Page<Reading> = await api<Page<Reading>>(
          `/api/meters/${encodeURIComponent(meterId)}/readings${qs({ from: fromMs, to: toMs, obis, cursor, limit: 1000 })}`,
        );
        rows.push(...page.items);
        cursor = page.next_cursor;
        if (rows.length >= CHART_ROWS_MAX && cursor !== null) {
          cut = true;
          break;
        }
      } while (cursor !== null);
    } catch (error) {
      if (!life.alive() || ticket !== chartTicket) return;
      chartNote.textContent = "";
      clear(chartBox);
      chartBox.append(errorBox(error));
      return;
    }
    if (!life.alive() || ticket !== chartTicket) return;
    rows.sort((a, b) => a.timestamp_ms - b.timestamp_ms);
    const first = rows[0];
    const energy = first !== undefined && isEnergy(obis, first.unit);
    const xs: number[] = [];
    const ys: number[] = [];
    let span = 1;
    if (energy) {
      // The load between register readings: Δenergy / Δtime, as average power in W (var, VA). A register
      // counts whole units (1 Wh): when readings are only a few units apart, the load is taken over a span
      // of readings long enough to hold LOAD_SPAN_UNITS_MIN units (at most half of them), not a sawtooth.
      const last = rows[rows.length - 1];
      if (first !== undefined && last !== undefined && rows.length > 2) {
        const unitsPerReading = (last.value - first.value) / (rows.length - 1);
        if (unitsPerReading > 0)
          span = Math.max(1, Math.min(Math.floor(rows.length / 2), Math.ceil(LOAD_SPAN_UNITS_MIN / unitsPerReading)));
      }
      for (let i = span; i < rows.length; i++) {
        const a = rows[i - span]!;
        const b = rows[i]!;
        const hours = (b.timestamp_ms - a.timestamp_ms) / HOUR_MS;
        if (hours <= 0) continue;
        xs.push(b.timestamp_ms / 1000);
        ys.push((scaled(b) - scaled(a)) / hours);
      }
    } else {
      for (const r of rows) {
        xs.push(r.timestamp_ms / 1000);
        ys.push(scaled(r));
      }
    }
    const unit = first === undefined ? "" : (DLMS_UNITS[first.unit] ?? "");
    const yLabel = energy ? `average ${unit.replace(/h$/, "")}` : unit;
    chartBox.dataset.points = String(xs.length);
    plot?.destroy();
    plot = null;
    clear(chartBox);
    if (xs.length === 0) {
      chartNote.textContent = `No readings of ${obis} between ${fmtTime(fromMs)} and ${fmtTime(toMs)}.`;
      chartBox.append(h("p", { class: "empty" }, "Nothing to draw in this range."));
      return;
    }
    chartNote.textContent = `${fmtNumber(rows.length)} readings of ${obis} from ${fmtTime(fromMs)} to ${fmtTime(toMs)}${
      energy ? ` — load derived from the energy register${span > 1 ? `, each point averaged over ${span} readings` : ""}` : ""
    }${cut ? ` — the first ${fmtNumber(CHART_ROWS_MAX)} only: narrow the range to see the rest` : ""}.`;
    chartBox.setAttribute("aria-label", `Load chart: ${xs.length} points of ${obis}`);
    const width = Math.max(280, chartBox.clientWidth || 600);
    plot = new uPlot(
      {
        width,
        height: 260,
        scales: { x: { time: true } },
        series: [
          {},
          {
            label: yLabel,
            stroke: "#0b5cad",
            width: 2,
            fill: "rgba(11, 92, 173, 0.08)",
            points: { show: xs.length < 200 },
          },
        ],
        axes: [{}, { label: yLabel, size: 70 }],
      },
      [xs, ys],
      chartBox,
    );
  }

  const onResize = () => {
    if (plot !== null) plot.setSize({ width: Math.max(280, chartBox.clientWidth), height: 260 });
  };
  window.addEventListener("resize", onResize);
  life.add(() => window.removeEventListener("resize", onResize));

  rangeSel.addEventListener("change", () => {
    const custom = rangeSel.value === "custom";
    for (const el of [fromIn, toIn, fromLabel, toLabel]) el.hidden = !custom;
    if (custom && fromIn.value === "") {
      fromIn.value = toLocalInput(anchorMs() - 24 * HOUR_MS);
      toIn.value = toLocalInput(anchorMs());
    }
    void loadChart();
  });
  obisSel.addEventListener("change", () => void loadChart());
  fromIn.addEventListener("change", () => void loadChart());
  toIn.addEventListener("change", () => void loadChart());

  exportBtn.addEventListener("click", () => {
    void (async () => {
      const { fromMs, toMs } = range();
      exportBtn.disabled = true;
      clear(exportNote);
      exportNote.append(h("p", { class: "hint" }, "Exporting…"));
      try {
        const response = await request(`/api/evidence/export${qs({ meter_id: meterId, from: fromMs, to: toMs })}`);
        const blob = await response.blob();
        const counts = JSON.parse(response.headers.get("x-amiproof-export") ?? "{}") as Record<string, number>;
        const notes = decodeURIComponent(response.headers.get("x-amiproof-export-notes") ?? "");
        const url = URL.createObjectURL(blob);
        const name = `evidence-${meterId}-${fromMs}-${toMs}.json`;
        const link = h("a", { href: url, download: name }, `Download ${name} again`);
        clear(exportNote);
        append(exportNote, [
          h(
            "p",
            { class: "ok-text", id: "export-result" },
            `Bundle ready: ${fmtNumber(counts.readings)} readings in ${fmtNumber(counts.batches)} signed batches, ${fmtNumber(counts.events)} sealed events. Check it offline with `,
            h("code", {}, `amiproof verify ${name}`),
            ". ",
            link,
          ),
          notes === "" ? null : h("p", { class: "hint" }, `Left out: ${notes}`),
        ]);
        link.click();
        life.add(() => URL.revokeObjectURL(url));
        announce("Evidence bundle exported");
      } catch (error) {
        clear(exportNote);
        exportNote.append(errorBox(error));
      } finally {
        exportBtn.disabled = false;
      }
    })();
  });

  // The event log, newest first, page by page (each record re-verified by the head-end).
  const logItems: LogItem[] = [];
  let older: { before_ms: number; before_seq: number } | null = null;
  async function loadLog(): Promise<void> {
    moreLog.disabled = true;
    try {
      const page = await api<{
        items: LogItem[];
        older: { before_ms: number; before_seq: number } | null;
        key_provisioned: boolean;
      }>(
        `/api/dashboard/meters/${encodeURIComponent(meterId)}/event-log${qs({
          order: "newest",
          limit: EVENT_LOG_PAGE_ROWS,
          before_ms: older?.before_ms,
          before_seq: older?.before_seq,
        })}`,
      );
      if (!life.alive()) return;
      logItems.push(...[...page.items].reverse());
      older = page.older;
      moreLog.hidden = older === null;
      clear(log);
      const bad = logItems.filter((e) => !e.ok).length;
      log.append(
        h(
          "p",
          { class: "hint" },
          `${fmtNumber(logItems.length)} ${logItems.length === 1 ? "record" : "records"}, newest first. Each one re-checked by the head-end: CRC, signature with the meter's event_seal key, and its link to the previous record's digest. `,
          bad === 0 ? badge("all verified", "ok") : badge(`${bad} not verified`, "bad"),
        ),
        logItems.length === 0
          ? h("p", { class: "empty" }, "No sealed event received from this meter yet.")
          : table(
              ["Seq", "Time", "Type", "Level", "Time quality", "Verification", "Snapshot"],
              logItems.map((e) => [
                String(e.seq),
                fmtTime(e.timestamp_ms),
                e.type,
                badge(e.level, levelTone(e.level)),
                e.time_quality,
                e.ok
                  ? badge(
                      "✓ verified",
                      "ok",
                      `signature ${e.signature}, chain ${e.chain === "genesis" ? "anchored at genesis" : "linked"}`,
                    )
                  : h("span", {}, badge("✗ not verified", "bad"), " ", h("small", {}, e.problem ?? "")),
                h("small", { class: "snapshot" }, snapshotText(e.snapshot)),
              ]),
              "Sealed event log",
            ),
      );
      renderTamper();
      renderFirmware(logItems.filter((e) => FIRMWARE_EVENT_TYPES.has(e.type)));
    } catch (error) {
      if (!life.alive()) return;
      clear(log);
      log.append(errorBox(error));
    } finally {
      moreLog.disabled = false;
    }
  }
  moreLog.addEventListener("click", () => void loadLog());

  function renderTamper(): void {
    clear(tamper);
    const rows = logItems.filter((e) => TAMPER_TYPES.has(e.type));
    tamper.append(
      h("p", {}, "Now: ", meter === null ? "—" : meter.tamper_state === "CLEAR" ? badge("CLEAR", "ok") : badge(meter.tamper_state, "bad")),
      rows.length === 0
        ? h("p", { class: "empty" }, "No tamper event in the loaded log.")
        : table(
            ["Seq", "Time", "Event", "Level"],
            rows.map((e) => [String(e.seq), fmtTime(e.timestamp_ms), e.type, badge(e.level, levelTone(e.level))]),
            "Tamper history",
          ),
    );
  }

  function renderFirmware(events: LogItem[]): void {
    clear(firmware);
    const m = meter;
    const active = m?.firmware_bank ?? null;
    const banks = ["A", "B"].map((bank) =>
      h(
        "div",
        { class: `bank${bank === active ? " bank-active" : ""}` },
        h("strong", {}, `Bank ${bank}`),
        bank === active
          ? h("span", {}, badge("active", "ok"), ` ${m?.firmware_version ?? "version not reported"}`)
          : h("span", { class: "hint" }, active === null ? "not reported" : "standby"),
      ),
    );
    append(firmware, [
      h("div", { class: "banks" }, banks),
      events.length === 0
        ? h("p", { class: "hint" }, "No firmware event in the loaded log (bank and version follow FW_ACTIVATED / FW_CONFIRMED / FW_ROLLED_BACK).")
        : table(
            ["Seq", "Time", "Event", "Details"],
            events.map((e) => [String(e.seq), fmtTime(e.timestamp_ms), e.type, h("small", {}, snapshotText(e.snapshot))]),
            "Firmware events",
          ),
    ]);
  }

  life.add(
    onAlert((e) => {
      if (e.alert.meter_id === meterId) {
        void loadMeter();
        logItems.length = 0;
        older = null;
        void loadLog();
      }
    }),
  );
  void loadMeter();
  void loadLog();
  return life.leave;
}
