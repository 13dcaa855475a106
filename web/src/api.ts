// The head-end API from the browser: the token (sessionStorage, this tab only), JSON calls, typed errors.

const TOKEN_KEY = "amiproof.token";

export type Role = "viewer" | "operator" | "admin";
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAtLeast(role: Role | null, needed: Role): boolean {
  return role !== null && RANK[role] >= RANK[needed];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const token = getToken();
  const headers = new Headers(init.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  if (init.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let code = `HTTP_${response.status}`;
    let message = response.statusText;
    try {
      const body = (await response.json()) as { error?: string; message?: string };
      code = body.error ?? code;
      message = body.message ?? message;
    } catch {
      // not JSON
    }
    if (response.status === 401) onUnauthorized();
    throw new ApiError(response.status, code, `${code}: ${message}`);
  }
  return response;
}

export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  return (await request(path, init)).json() as Promise<T>;
}

export function post<T>(path: string, body: unknown = {}): Promise<T> {
  return api<T>(path, { method: "POST", body: JSON.stringify(body) });
}

export function qs(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  const text = q.toString();
  return text === "" ? "" : `?${text}`;
}

// ───────────── the API's JSON (snake_case, as on the wire) ─────────────

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Meter {
  meter_id: string;
  dcu_id: string | null;
  model: string | null;
  group: string | null;
  transformer_id: string | null;
  firmware_version: string | null;
  firmware_bank: string | null;
  tamper_state: string;
  last_seq: number | null;
  last_reading_ms: number | null;
  time_quality: string | null;
  online: boolean;
  updated_ms: number | null;
}

export interface Alert {
  alert_id: number;
  meter_id: string | null;
  dcu_id: string | null;
  type: string;
  level: string;
  counter: number;
  detected_ms: number;
  received_ms: number;
  stored_ms: number;
  state: "open" | "acknowledged" | "resolved";
  acknowledged_by: string | null;
  acknowledged_ms: number | null;
  resolved_by: string | null;
  resolved_ms: number | null;
  snapshot: Record<string, unknown>;
  aggregated_count: number;
  verified: boolean;
}

export interface Reading {
  meter_id: string;
  seq: number;
  obis: string;
  value: number;
  scaler: number;
  unit: number;
  timestamp_ms: number;
  time_quality: string;
  commit_id: number;
  dcu_id: string;
  batch_id: number;
}

export interface Stats {
  now_ms: number;
  readings_per_s: number;
  readings_stored_total: number;
  batches_accepted_total: number;
  batches_rejected_total: Record<string, number>;
  alerts_total: Record<string, number>;
  alerts_open: number;
  alerts_open_more: boolean;
  gaps_total: Record<string, number>;
  meters_online: number;
  meters_total: number;
  events_total: number;
  alert_latency_p50_ms: number | null;
  alert_latency_p99_ms: number | null;
}

export function sum(record: Record<string, number> | undefined): number {
  return Object.values(record ?? {}).reduce((a, b) => a + b, 0);
}
