// Firmware and campaigns. The campaign routes are discovered from the head-end's /openapi.json: what the
// head-end offers is shown (with its role), what it does not offer is not. Firmware images are listed
// and, for admins, uploaded here (POST /api/firmware, seed 000 "Level 4").
import { api, type Page, post, type Role, roleAtLeast } from "../api.ts";
import { announce, badge, clear, errorBox, fmtNumber, fmtTime, h, section, table } from "../dom.ts";
import { type PageContext, pageLife } from "./page.ts";

export const CAMPAIGN_REFRESH_MS = 3_000;

/** The campaign states in which each known action applies (unknown actions are always offered). */
const ACTION_STATES: Readonly<Record<string, readonly string[]>> = {
  approve: ["pending_approval"],
  start: ["approved"],
  pause: ["running", "awaiting_operator"],
  resume: ["paused"],
  advance: ["awaiting_operator"],
  retry: ["running", "paused", "awaiting_operator", "completed"],
  cancel: ["pending_approval", "approved", "running", "awaiting_operator", "paused"],
};

interface Operation {
  method: string;
  path: string;
  role: Role | null;
  summary: string;
  body: string | null;
}

interface Firmware {
  component: string;
  version: string;
  release_counter: number;
  checksum: string;
  expiry_ms: number | null;
  uploaded_ms: number;
}

interface Campaign {
  campaign_id: string;
  name: string;
  kind: string;
  state: string;
  pause_reason?: string | null;
  meters?: number;
  counts?: Record<string, number>;
  progress?: number;
  current_wave?: number;
  waves?: { wave: number; size: number; confirmed: number; failed: number; rolled_back: number }[];
  window_ms?: number;
  reasons?: Record<string, number>;
  [key: string]: unknown;
}

async function operations(): Promise<Operation[]> {
  const doc = await api<{ paths: Record<string, Record<string, Record<string, unknown>>> }>("/openapi.json");
  const out: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const role = op["x-amiproof-role"];
      const body = (op.requestBody as { description?: string } | undefined)?.description ?? null;
      out.push({
        method: method.toUpperCase(),
        path,
        role: role === "viewer" || role === "operator" || role === "admin" ? role : null,
        summary: String(op.summary ?? ""),
        body,
      });
    }
  }
  return out;
}

function progressBar(label: string, value: number, max: number): HTMLElement {
  const share = max === 0 ? 0 : Math.round((value / max) * 100);
  return h(
    "div",
    { class: "progress-row" },
    h("span", { class: "progress-label" }, label),
    h("progress", { max: String(max), value: String(value), "aria-label": label }),
    h("span", { class: "num" }, `${fmtNumber(value)} / ${fmtNumber(max)} (${share} %)`),
  );
}

export function renderCampaigns(ctx: PageContext): () => void {
  const life = pageLife();
  const campaignsBox = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const firmwareBox = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const createBox = h("div", {});
  const status = h("div", { "aria-live": "polite" });
  ctx.main.append(
    h("h1", {}, "Campaigns"),
    status,
    section("Campaigns", campaignsBox, createBox),
    section("Firmware images", firmwareBox),
  );

  let ops: Operation[] = [];
  const find = (method: string, pattern: RegExp) => ops.filter((o) => o.method === method && pattern.test(o.path));
  const allowed = (o: Operation) => o.role === null || roleAtLeast(ctx.role, o.role);

  async function loadFirmware(): Promise<void> {
    try {
      const { items } = await api<{ items: Firmware[] }>("/api/firmware");
      if (!life.alive()) return;
      clear(firmwareBox);
      firmwareBox.append(
        items.length === 0
          ? h("p", { class: "empty" }, "No firmware image uploaded yet.")
          : table(
              ["Component", "Version", "Release counter", "SHA-256", "Uploaded", "Expires"],
              items.map((f) => [
                f.component,
                f.version,
                String(f.release_counter),
                h("code", { title: f.checksum }, `${f.checksum.slice(0, 16)}…`),
                fmtTime(f.uploaded_ms),
                f.expiry_ms === null ? "never" : fmtTime(f.expiry_ms),
              ]),
              "Firmware images",
            ),
      );
      // The repository's verified upload (certificate chain, signature, expiry) when the head-end has it.
      const verified = ops.find((o) => o.method === "POST" && o.path === "/api/campaigns/images");
      const plain = ops.find((o) => o.method === "POST" && o.path === "/api/firmware");
      if (verified !== undefined && allowed(verified)) firmwareBox.append(uploadForm(true));
      else if (plain !== undefined && allowed(plain)) firmwareBox.append(uploadForm(false));
    } catch (error) {
      if (life.alive()) firmwareBox.append(errorBox(error));
    }
  }

  function uploadForm(verified: boolean): HTMLElement {
    const file = h("input", { id: "fw-file", type: "file", required: true });
    const component = h("select", { id: "fw-component" }, h("option", { value: "app" }, "app"), h("option", { value: "comms" }, "comms"));
    const version = h("input", { id: "fw-version", type: "text", required: true, placeholder: "1.2.0", pattern: "\\d+\\.\\d+\\.\\d+" });
    const counter = h("input", { id: "fw-counter", type: "number", required: true, min: "0", step: "1", value: "1" });
    const note = h("div", { "aria-live": "polite" });
    const form = h(
      "form",
      { class: "stack", "aria-label": "Upload a firmware image" },
      h("h3", {}, "Upload a signed image (admin)"),
      h("div", { class: "field" }, h("label", { for: "fw-file" }, "Signed image (amiproof firmware build)"), file),
      verified
        ? h("p", { class: "hint" }, "Component, version and release counter are read from the signed image; its CRC, certificate chain, signature and expiry are checked by the head-end.")
        : h(
            "div",
            { class: "filters" },
            h("div", { class: "field" }, h("label", { for: "fw-component" }, "Component"), component),
            h("div", { class: "field" }, h("label", { for: "fw-version" }, "Version"), version),
            h("div", { class: "field" }, h("label", { for: "fw-counter" }, "Release counter"), counter),
          ),
      h("button", { type: "submit", class: "primary" }, "Upload"),
      note,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void (async () => {
        clear(note);
        const chosen = file.files?.[0];
        if (chosen === undefined) return;
        const bytes = new Uint8Array(await chosen.arrayBuffer());
        let binary = "";
        for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        try {
          const result = verified
            ? await post<{ checksum: string; stored: boolean }>("/api/campaigns/images", { image_base64: btoa(binary) })
            : await post<{ checksum: string; stored: boolean }>("/api/firmware", {
                component: component.value,
                version: version.value,
                release_counter: Number(counter.value),
                image_base64: btoa(binary),
              });
          note.append(h("p", { class: "ok-text" }, `${result.stored ? "Stored" : "Already held"}: SHA-256 ${result.checksum}`));
          announce("Firmware image uploaded");
          void loadFirmware();
        } catch (error) {
          note.append(errorBox(error));
        }
      })();
    });
    return form;
  }

  function campaignCard(c: Campaign, actions: Operation[]): HTMLElement {
    const counts = c.counts ?? {};
    const size = c.meters ?? Object.values(counts).reduce((a, b) => a + b, 0);
    const buttons = actions
      .filter(allowed)
      .filter((o) => {
        const valid = ACTION_STATES[o.path.split("/").pop() ?? ""];
        return valid === undefined || valid.includes(c.state);
      })
      .map((o) => {
        const action = o.path.split("/").pop() ?? "";
        // A rollback's approval and start, and any cancel, are confirmed naming the window and fleet size.
        const destructive =
          action === "cancel" || (c.kind.startsWith("rollback") && (action === "approve" || action === "start"));
        return h(
          "button",
          {
            type: "button",
            class: destructive ? "danger" : "",
            title: o.summary,
            "data-action": action,
            onclick: () => {
              if (destructive) {
                const window =
                  typeof c.window_ms === "number"
                    ? `a ${fmtNumber(c.window_ms / 60_000)}-minute window`
                    : "the staggered window set at its creation";
                const ok = confirm(
                  `${action} campaign "${c.name}" (${c.kind}) over ${window}, on a fleet of ${fmtNumber(size)} meters?`,
                );
                if (!ok) return;
              }
              void (async () => {
                clear(status);
                try {
                  await post(o.path.replace(/\{[^}]+\}/, encodeURIComponent(c.campaign_id)));
                  announce(`Campaign ${c.name}: ${action} sent`);
                  void loadCampaigns();
                } catch (error) {
                  status.append(errorBox(error));
                }
              })();
            },
          },
          action.replace(/_/g, " "),
        );
      });
    return h(
      "article",
      { class: "campaign", "data-campaign": c.campaign_id },
      h(
        "header",
        { class: "alert-head" },
        h("strong", {}, c.name),
        badge(c.kind, c.kind.startsWith("rollback") ? "warn" : "info"),
        badge(c.state, c.state === "completed" ? "ok" : c.state === "paused" || c.state === "awaiting_operator" ? "warn" : c.state === "cancelled" ? "muted" : "info"),
        c.pause_reason ? h("span", { class: "hint" }, c.pause_reason) : null,
      ),
      typeof c.progress === "number" ? progressBar("overall", Math.round(c.progress * size), size) : null,
      (c.waves ?? []).map((w) =>
        progressBar(`wave ${w.wave}${c.current_wave === w.wave ? " (current)" : ""}`, w.confirmed + w.failed + w.rolled_back, w.size),
      ),
      Object.keys(counts).length === 0
        ? null
        : h("ul", { class: "state-counts" }, Object.entries(counts).map(([state, n]) => h("li", {}, h("span", { class: "hint" }, state), " ", h("strong", {}, fmtNumber(n))))),
      Object.keys(c.reasons ?? {}).length === 0
        ? null
        : h(
            "p",
            { class: "hint" },
            "Reasons: ",
            Object.entries(c.reasons ?? {})
              .map(([reason, n]) => `${reason} × ${n}`)
              .join(", "),
          ),
      buttons.length === 0 ? null : h("div", { class: "actions" }, buttons),
    );
  }

  async function loadCampaigns(): Promise<void> {
    const list = find("GET", /^\/api\/campaigns$/)[0];
    if (list === undefined) {
      clear(campaignsBox);
      campaignsBox.append(h("p", { class: "empty" }, "This head-end offers no campaign API yet: firmware images can be uploaded below, campaigns come with a later version."));
      return;
    }
    try {
      const result = await api<Page<Campaign> | Campaign[] | { campaigns: Campaign[] }>("/api/campaigns");
      if (!life.alive()) return;
      const items = Array.isArray(result) ? result : "items" in result ? result.items : result.campaigns;
      const actions = find("POST", /^\/api\/campaigns\/\{[^}]+\}\/[a-z_]+$/);
      clear(campaignsBox);
      campaignsBox.append(
        items.length === 0 ? h("p", { class: "empty" }, "No campaign yet.") : h("div", { class: "campaigns" }, items.map((c) => campaignCard(c, actions))),
      );
      const create = find("POST", /^\/api\/campaigns$/)[0];
      if (create !== undefined && allowed(create) && createBox.childElementCount === 0)
        createBox.append(createForm(create));
    } catch (error) {
      if (!life.alive()) return;
      clear(campaignsBox);
      campaignsBox.append(errorBox(error));
    }
  }

  function createForm(op: Operation): HTMLElement {
    const field = (id: string, label: string, control: HTMLElement, hint?: string) =>
      h("div", { class: "field" }, h("label", { for: id }, label), control, hint === undefined ? null : h("small", { class: "hint" }, hint));
    const name = h("input", { id: "c-name", type: "text", required: true, placeholder: "app 1.2.0 pilot" });
    const kind = h(
      "select",
      { id: "c-kind" },
      [
        ["update", "update"],
        ["rollback_app", "rollback (application)"],
        ["rollback_full", "rollback (full, to golden)"],
      ].map(([v, t]) => h("option", { value: v, disabled: v !== "update" && !roleAtLeast(ctx.role, "admin") }, t)),
    );
    const image = h("select", { id: "c-image", required: true }, h("option", { value: "" }, "choose an image…"));
    const list = (id: string) => h("input", { id, type: "text", placeholder: "comma separated", autocomplete: "off" });
    const groups = list("c-groups");
    const dcus = list("c-dcus");
    const models = list("c-models");
    const versions = list("c-versions");
    const waves = h("input", { id: "c-waves", type: "text", value: "10, 50, 100" });
    const windowMinutes = h("input", { id: "c-window", type: "number", min: "1", step: "1", value: "60" });
    const note = h("div", { "aria-live": "polite" });
    void api<{ items: Firmware[] }>("/api/firmware").then(({ items }) => {
      for (const f of items)
        image.append(h("option", { value: f.checksum }, `${f.component} ${f.version} (${f.checksum.slice(0, 12)}…)`));
    }, () => {});
    const form = h(
      "form",
      { class: "stack", "aria-label": "Create a campaign" },
      h("p", { class: "hint" }, op.summary),
      h("div", { class: "filters" }, field("c-name", "Name", name), field("c-kind", "Kind", kind), field("c-image", "Image", image)),
      h(
        "fieldset",
        {},
        h("legend", {}, "Targets (every given list must match)"),
        h("div", { class: "filters" }, field("c-groups", "Groups", groups), field("c-dcus", "Concentrators", dcus), field("c-models", "Models", models), field("c-versions", "Running versions", versions)),
      ),
      h("div", { class: "filters" }, field("c-waves", "Waves (cumulative %)", waves), field("c-window", "Window (minutes)", windowMinutes, "starts are staggered over it")),
      h("button", { type: "submit", class: "primary" }, "Create (waits for approval)"),
      note,
    );
    const split = (input: HTMLInputElement) =>
      input.value.split(",").map((v) => v.trim()).filter((v) => v !== "");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void (async () => {
        clear(note);
        const targets: Record<string, string[]> = {};
        for (const [key, input] of [["groups", groups], ["dcu_ids", dcus], ["models", models], ["versions", versions]] as const) {
          const values = split(input);
          if (values.length > 0) targets[key] = values;
        }
        const body = {
          name: name.value.trim(),
          kind: kind.value,
          image_checksum: image.value,
          targets,
          waves: split(waves).map(Number),
          window_minutes: Number(windowMinutes.value),
        };
        if (
          kind.value.startsWith("rollback") &&
          !confirm(`Create the rollback campaign "${body.name}" over a ${body.window_minutes}-minute window, on every meter matching ${JSON.stringify(targets)}? It still needs an admin's approval.`)
        )
          return;
        try {
          const created = await post<Campaign>("/api/campaigns", body);
          note.append(h("p", { class: "ok-text" }, `Created "${created.name}" on ${fmtNumber(created.meters ?? 0)} meters: it waits for approval.`));
          announce("Campaign created");
          void loadCampaigns();
        } catch (error) {
          note.append(errorBox(error));
        }
      })();
    });
    return h("details", {}, h("summary", {}, "Create a campaign"), form);
  }

  void (async () => {
    try {
      ops = await operations();
    } catch (error) {
      status.append(errorBox(error));
    }
    if (!life.alive()) return;
    await loadCampaigns();
    await loadFirmware();
  })();
  const timer = window.setInterval(() => {
    if (ops.some((o) => o.path === "/api/campaigns")) void loadCampaigns();
  }, CAMPAIGN_REFRESH_MS);
  life.add(() => window.clearInterval(timer));
  return life.leave;
}
