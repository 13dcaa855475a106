// Live data shared by every page: one server-sent event stream of alerts (GET /api/alerts/stream) and one
// poll of the counters (GET /api/stats). Pages subscribe and unsubscribe as they come and go.
import { type Alert, api, getToken, type Stats } from "./api.ts";

export const STATS_POLL_MS = 2_000;

export type AlertEvent = { kind: "alert" | "alert_update"; alert: Alert };
type StreamState = "connecting" | "live" | "reconnecting" | "off";

const alertListeners = new Set<(e: AlertEvent) => void>();
const stateListeners = new Set<(s: StreamState) => void>();
const statsListeners = new Set<(s: Stats) => void>();
let source: EventSource | null = null;
let state: StreamState = "off";
let statsTimer: number | null = null;
let lastStats: Stats | null = null;

function setState(next: StreamState): void {
  state = next;
  for (const l of stateListeners) l(state);
}

export function startLive(): void {
  stopLive();
  const token = getToken();
  if (token === null) return;
  setState("connecting");
  // EventSource cannot send headers: the stream alone takes the token as ?token= (head-end README).
  const es = new EventSource(`/api/alerts/stream?token=${encodeURIComponent(token)}`);
  source = es;
  es.addEventListener("ready", () => setState("live"));
  const relay = (kind: AlertEvent["kind"]) => (event: MessageEvent) => {
    let alert: Alert;
    try {
      alert = JSON.parse(String(event.data)) as Alert;
    } catch {
      return;
    }
    for (const l of alertListeners) l({ kind, alert });
    if (kind === "alert") void pollStats();
  };
  es.addEventListener("alert", relay("alert"));
  es.addEventListener("alert_update", relay("alert_update"));
  es.addEventListener("error", () => {
    // EventSource retries by itself (the stream asks for 2 s); say so meanwhile.
    if (source === es) setState(es.readyState === EventSource.CLOSED ? "off" : "reconnecting");
  });
}

export function stopLive(): void {
  source?.close();
  source = null;
  if (statsTimer !== null) window.clearInterval(statsTimer);
  statsTimer = null;
  lastStats = null;
  setState("off");
}

export function onAlert(listener: (e: AlertEvent) => void): () => void {
  alertListeners.add(listener);
  return () => alertListeners.delete(listener);
}

export function onStreamState(listener: (s: StreamState) => void): () => void {
  stateListeners.add(listener);
  listener(state);
  return () => stateListeners.delete(listener);
}

async function pollStats(): Promise<void> {
  if (getToken() === null || statsListeners.size === 0) return;
  try {
    lastStats = await api<Stats>("/api/stats");
    for (const l of statsListeners) l(lastStats);
  } catch {
    // the next poll tries again; a 401 signs out through the API layer
  }
}

export function onStats(listener: (s: Stats) => void): () => void {
  statsListeners.add(listener);
  if (lastStats !== null) listener(lastStats);
  if (statsTimer === null) statsTimer = window.setInterval(() => void pollStats(), STATS_POLL_MS);
  void pollStats();
  return () => {
    statsListeners.delete(listener);
    if (statsListeners.size === 0 && statsTimer !== null) {
      window.clearInterval(statsTimer);
      statsTimer = null;
    }
  };
}
