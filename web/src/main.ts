// The dashboard shell: sign-in with an API token, the navigation, a hash router, the live-stream badge.
import "./style.css";
import { api, type Role, getToken, setToken, setUnauthorizedHandler } from "./api.ts";
import { badge, clear, errorBox, h } from "./dom.ts";
import { onStreamState, startLive, stopLive } from "./live.ts";
import { renderAlerts } from "./pages/alerts.ts";
import { renderCampaigns } from "./pages/campaigns.ts";
import { renderEvidence } from "./pages/evidence.ts";
import { renderFleet } from "./pages/fleet.ts";
import { renderMeter } from "./pages/meter.ts";
import type { PageContext } from "./pages/page.ts";

interface Session {
  role: Role;
  label: string;
}

let session: Session | null = null;
let cleanup: (() => void) | null = null;

const NAV: readonly { href: string; label: string; match: (path: string) => boolean }[] = [
  { href: "#/", label: "Fleet", match: (p) => p === "/" || p.startsWith("/meters/") },
  { href: "#/alerts", label: "Alerts", match: (p) => p === "/alerts" },
  { href: "#/evidence", label: "Evidence health", match: (p) => p === "/evidence" },
  { href: "#/campaigns", label: "Campaigns", match: (p) => p === "/campaigns" },
];

function currentPath(): { path: string; params: URLSearchParams } {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path = "/", query = ""] = raw.split("?", 2);
  return { path, params: new URLSearchParams(query) };
}

function renderHeader(): void {
  const top = document.getElementById("top")!;
  clear(top);
  const { path } = currentPath();
  const brand = h("a", { class: "brand", href: "#/" }, h("span", { class: "logo", "aria-hidden": "true" }, "A"), "amiproof");
  if (session === null) {
    top.append(h("div", { class: "bar" }, brand));
    return;
  }
  const stream = h("span", { class: "stream", role: "status" });
  const unsubscribe = onStreamState((s) => {
    clear(stream);
    stream.append(
      badge(
        s === "live" ? "live" : s === "off" ? "offline" : s,
        s === "live" ? "ok" : s === "off" ? "bad" : "warn",
        "alert stream (server-sent events)",
      ),
    );
  });
  headerCleanup = unsubscribe;
  const signOut = h("button", { type: "button", class: "link-button", onclick: () => signOutNow() }, "Sign out");
  top.append(
    h(
      "div",
      { class: "bar" },
      brand,
      h(
        "nav",
        { "aria-label": "Main" },
        h(
          "ul",
          {},
          NAV.map((n) =>
            h("li", {}, h("a", { href: n.href, "aria-current": n.match(path) ? "page" : null }, n.label)),
          ),
        ),
      ),
      h(
        "div",
        { class: "who" },
        stream,
        h("span", { class: "role", "data-role": session.role, title: session.label }, session.role),
        signOut,
      ),
    ),
  );
}
let headerCleanup: (() => void) | null = null;

function signOutNow(): void {
  setToken(null);
  session = null;
  stopLive();
  if (location.hash === "#/signin") route();
  else location.hash = "#/signin";
}

function renderSignIn(main: HTMLElement, problem: string | null): void {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "amp_…",
    "aria-describedby": "token-help",
  });
  const status = h("div", { "aria-live": "polite" }, problem === null ? null : errorBox(problem));
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "hint" },
      "A head-end token (viewer, operator or admin). The head-end writes one per role to ",
      h("code", {}, "<data>/tokens/<role>.token"),
      " on its first start; admins issue more with POST /api/tokens. It is kept for this tab only.",
    ),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      const token = input.value.trim();
      setToken(token);
      try {
        const who = await api<{ role: Role; label: string }>("/api/whoami");
        session = { role: who.role, label: who.label };
        startLive();
        const target = sessionStorage.getItem("amiproof.after-signin") ?? "#/";
        sessionStorage.removeItem("amiproof.after-signin");
        // A changed hash routes through hashchange; the same one is routed here.
        if (location.hash === target) route();
        else location.hash = target;
      } catch (error) {
        setToken(null);
        clear(status);
        status.append(errorBox(error));
        input.focus();
      }
    })();
  });
  main.append(form);
  input.focus();
}

function route(moveFocus = false): void {
  cleanup?.();
  cleanup = null;
  headerCleanup?.();
  headerCleanup = null;
  const main = document.getElementById("main")!;
  clear(main);
  const { path, params } = currentPath();
  if (session === null) {
    renderHeader();
    if (path !== "/signin") sessionStorage.setItem("amiproof.after-signin", location.hash || "#/");
    if (path !== "/signin") history.replaceState(null, "", "#/signin");
    renderSignIn(main, null);
    document.title = "Sign in — amiproof";
    return;
  }
  if (path === "/signin") {
    location.hash = "#/";
    return;
  }
  renderHeader();
  const ctx: PageContext = { role: session.role, main, params };
  const meter = /^\/meters\/(.+)$/.exec(path);
  if (path === "/") cleanup = renderFleet(ctx);
  else if (meter !== null) cleanup = renderMeter(ctx, decodeURIComponent(meter[1]!));
  else if (path === "/alerts") cleanup = renderAlerts(ctx);
  else if (path === "/evidence") cleanup = renderEvidence(ctx);
  else if (path === "/campaigns") cleanup = renderCampaigns(ctx);
  else {
    main.append(h("section", { class: "card" }, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the fleet"))));
  }
  const heading = main.querySelector("h1");
  document.title = `${heading?.textContent ?? "Dashboard"} — amiproof`;
  // After an in-app navigation the clicked link is gone: keyboard and screen-reader users start at the page.
  if (moveFocus) main.focus();
}

async function boot(): Promise<void> {
  setUnauthorizedHandler(() => {
    if (session !== null) {
      session = null;
      setToken(null);
      stopLive();
      route();
    }
  });
  const token = getToken();
  if (token !== null) {
    try {
      const who = await api<{ role: Role; label: string }>("/api/whoami");
      session = { role: who.role, label: who.label };
      startLive();
    } catch {
      setToken(null);
      session = null;
    }
  }
  window.addEventListener("hashchange", () => route(true));
  route();
}

void boot();
