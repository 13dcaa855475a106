// Evidence health: gaps by class (seed 003 H2-4 attribution) over time, per concentrator and per meter.
// Aggregated on the server (GET /api/dashboard/gaps/timeline, GET /api/gaps/summary).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, type Page, qs } from "../api.ts";
import { GAP_CLASS_MEANING } from "../codes.ts";
import { append, badge, clear, errorBox, fmtAgo, fmtNumber, fmtTime, h, section, table } from "../dom.ts";
import { type PageContext, pageLife } from "./page.ts";

const CLASSES = ["SEQ_GAP", "COMMIT_GAP", "UPLINK_GAP", "TIME_STEP"] as const;
const HOUR_MS = 3_600_000;

interface Timeline {
  from_ms: number;
  to_ms: number;
  bucket_ms: number;
  buckets: number[];
  classes: { class: string; counts: number[] }[];
  gaps_in_range: number;
  open_in_range: number;
  scanned: number;
  truncated: boolean;
  by_dcu: ({ dcu_id: string; total: number } & Record<string, number | string>)[];
  dcus_total: number;
  by_meter: ({ meter_id: string; dcu_id: string; total: number } & Record<string, number | string>)[];
  meters_total: number;
}

interface Gap {
  gap_id: number;
  class: string;
  meter_id: string | null;
  dcu_id: string;
  from: number;
  to: number;
  detected_ms: number;
  attributed_to: string | null;
  resolved_ms: number | null;
}

export function renderEvidence(ctx: PageContext): () => void {
  const life = pageLife();
  const summary = h("div", { class: "counters", role: "group", "aria-label": "Gaps by class" });
  const rangeSel = h(
    "select",
    { id: "gap-range" },
    [
      [24, "last 24 hours"],
      [24 * 7, "last 7 days"],
      [24 * 30, "last 30 days"],
    ].map(([hours, label]) => h("option", { value: String(hours), selected: hours === 24 * 7 }, String(label))),
  );
  const chartBox = h("div", { class: "chart", id: "gap-chart", role: "img", "aria-label": "Gaps over time" });
  const chartNote = h("p", { class: "hint", "aria-live": "polite" });
  const byDcu = h("div", {});
  const byMeter = h("div", {});
  const recent = h("div", {});
  ctx.main.append(
    h("h1", {}, "Evidence health"),
    summary,
    section(
      "Gaps over time",
      h(
        "form",
        { class: "filters", "aria-label": "Range" },
        h("div", { class: "field" }, h("label", { for: "gap-range" }, "Range (detection time)"), rangeSel),
      ),
      chartBox,
      chartNote,
      h(
        "ul",
        { class: "legend" },
        CLASSES.map((c) =>
          h(
            "li",
            {},
            h("span", { class: "swatch", style: `background:${GAP_CLASS_MEANING[c]!.colour}` }),
            h("strong", {}, c),
            ` (${GAP_CLASS_MEANING[c]!.axis}): ${GAP_CLASS_MEANING[c]!.meaning}`,
          ),
        ),
      ),
    ),
    h("div", { class: "grid-2" }, section("Per concentrator", byDcu), section("Per meter (most affected)", byMeter)),
    section("Latest gaps", recent),
  );
  const form = chartBox.previousElementSibling;
  form?.addEventListener("submit", (e) => e.preventDefault());

  let plot: uPlot | null = null;
  life.add(() => plot?.destroy());
  const onResize = () => plot?.setSize({ width: Math.max(280, chartBox.clientWidth), height: 240 });
  window.addEventListener("resize", onResize);
  life.add(() => window.removeEventListener("resize", onResize));

  async function loadSummary(): Promise<void> {
    try {
      const s = await api<{ classes: { class: string; count: number; open: number; width: number }[] }>(
        "/api/gaps/summary",
      );
      if (!life.alive()) return;
      clear(summary);
      for (const c of CLASSES) {
        const row = s.classes.find((x) => x.class === c) ?? { count: 0, open: 0, width: 0 };
        summary.append(
          h(
            "div",
            { class: "counter", "data-class": c },
            h("span", { class: "value" }, fmtNumber(row.count)),
            h("span", { class: "label" }, `${c} · ${fmtNumber(row.open)} open · width ${fmtNumber(row.width)}`),
          ),
        );
      }
    } catch (error) {
      if (life.alive()) summary.append(errorBox(error));
    }
  }

  async function loadTimeline(): Promise<void> {
    const hours = Number(rangeSel.value);
    const toMs = Date.now();
    const fromMs = toMs - hours * HOUR_MS;
    let t: Timeline;
    try {
      t = await api<Timeline>(`/api/dashboard/gaps/timeline${qs({ from: fromMs, to: toMs, buckets: 48, top: 10 })}`);
    } catch (error) {
      if (!life.alive()) return;
      clear(chartBox);
      chartBox.append(errorBox(error));
      return;
    }
    if (!life.alive()) return;
    chartNote.textContent = `${fmtNumber(t.gaps_in_range)} gaps detected in range (${fmtNumber(t.open_in_range)} still open), in buckets of ${fmtNumber(
      t.bucket_ms / 60_000,
    )} min.${t.truncated ? ` Only the newest ${fmtNumber(t.scanned)} gaps were scanned: narrow the range.` : ""}`;
    plot?.destroy();
    clear(chartBox);
    const xs = t.buckets.map((ms) => ms / 1000);
    const data: uPlot.AlignedData = [xs, ...CLASSES.map((c) => t.classes.find((x) => x.class === c)?.counts ?? xs.map(() => 0))];
    plot = new uPlot(
      {
        width: Math.max(280, chartBox.clientWidth || 600),
        height: 240,
        scales: { x: { time: true } },
        series: [
          {},
          ...CLASSES.map((c) => ({
            label: c,
            stroke: GAP_CLASS_MEANING[c]!.colour,
            width: 2,
            paths: uPlot.paths.stepped?.({ align: 1 }),
            points: { show: false },
          })),
        ],
        axes: [{}, { label: "gaps", size: 50 }],
      },
      data,
      chartBox,
    );
    chartBox.dataset.gaps = String(t.gaps_in_range);

    const counts = (row: Record<string, number | string>) => CLASSES.map((c) => fmtNumber(Number(row[c] ?? 0)));
    clear(byDcu);
    append(byDcu, [
      t.by_dcu.length === 0
        ? h("p", { class: "empty" }, "No gap in this range.")
        : table(["Concentrator", ...CLASSES, "Total"], t.by_dcu.map((r) => [r.dcu_id, ...counts(r), fmtNumber(r.total)]), "Gaps per concentrator"),
      t.dcus_total > t.by_dcu.length ? h("p", { class: "hint" }, `${t.dcus_total - t.by_dcu.length} more concentrators with gaps.`) : null,
    ]);
    clear(byMeter);
    append(byMeter, [
      t.by_meter.length === 0
        ? h("p", { class: "empty" }, "No meter gap in this range.")
        : table(
            ["Meter", "Concentrator", ...CLASSES, "Total"],
            t.by_meter.map((r) => [
              h("a", { href: `#/meters/${encodeURIComponent(r.meter_id)}` }, r.meter_id),
              r.dcu_id,
              ...counts(r),
              fmtNumber(r.total),
            ]),
            "Gaps per meter",
          ),
      t.meters_total > t.by_meter.length ? h("p", { class: "hint" }, `${t.meters_total - t.by_meter.length} more meters with gaps.`) : null,
    ]);
  }

  async function loadRecent(): Promise<void> {
    try {
      const page = await api<Page<Gap>>("/api/gaps?limit=20");
      if (!life.alive()) return;
      clear(recent);
      recent.append(
        page.items.length === 0
          ? h("p", { class: "empty" }, "No gap recorded: every seq, commit_id and batch_id arrived in order.")
          : table(
              ["Gap", "Class", "Attributed to", "Concentrator", "Meter", "Range", "Detected", "State"],
              page.items.map((g) => [
                `#${g.gap_id}`,
                g.class,
                g.attributed_to ?? "—",
                g.dcu_id,
                g.meter_id === null ? "—" : h("a", { href: `#/meters/${encodeURIComponent(g.meter_id)}` }, g.meter_id),
                g.class === "TIME_STEP" ? `${fmtTime(g.from)} → ${fmtTime(g.to)}` : `${g.from}–${g.to}`,
                h("span", { title: fmtTime(g.detected_ms) }, fmtAgo(g.detected_ms)),
                g.resolved_ms === null ? badge("open", "warn") : badge("resolved", "ok"),
              ]),
              "Latest gaps",
            ),
      );
    } catch (error) {
      if (life.alive()) recent.append(errorBox(error));
    }
  }

  rangeSel.addEventListener("change", () => void loadTimeline());
  void loadSummary();
  void loadTimeline();
  void loadRecent();
  return life.leave;
}
