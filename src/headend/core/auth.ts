import { sha256, toHex } from "../../evidence/index.ts";
import { HeadendError } from "../errors.ts";
import type { HeadendStore } from "../store/index.ts";

// API tokens with roles. viewer reads; operator also acknowledges and resolves alerts; admin also
// provisions keys, manages tokens and runs firmware and rollback actions (seed 000's "Level 4"
// authorisation). Only the SHA-256 of a token is stored; the token itself is shown once.

export type Role = "viewer" | "operator" | "admin";
export const ROLES: readonly Role[] = ["viewer", "operator", "admin"];
const RANK: Readonly<Record<Role, number>> = { viewer: 1, operator: 2, admin: 3 };

export const TOKEN_PREFIX = "amp_";
export const TOKEN_RANDOM_BYTES = 32;
/** Bearer tokens longer than this are refused before hashing. */
export const TOKEN_CHARS_MAX = 256;
/** Verified tokens cached (hash → principal); a revocation clears the cache. */
export const TOKEN_CACHE_MAX = 1_024;

export interface Principal {
  readonly role: Role;
  readonly label: string;
  /** First 12 hex characters of the token hash: names the caller in the audit log without the secret. */
  readonly tokenId: string;
}

export function isRole(value: unknown): value is Role {
  return typeof value === "string" && (ROLES as readonly string[]).includes(value);
}

export function roleAtLeast(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed];
}

export function hashToken(token: string): string {
  return toHex(sha256(new TextEncoder().encode(token)));
}

export function newToken(randomBytes: (count: number) => Uint8Array): string {
  return `${TOKEN_PREFIX}${toHex(randomBytes(TOKEN_RANDOM_BYTES))}`;
}

export class TokenAuth {
  private readonly cache = new Map<string, Principal>();

  constructor(private readonly store: HeadendStore) {}

  /** Creates a token for `role`; returns the token text (shown once) and its principal. */
  async issue(
    role: Role,
    label: string,
    nowMs: number,
    randomBytes: (count: number) => Uint8Array,
  ): Promise<{ token: string; principal: Principal }> {
    const token = newToken(randomBytes);
    const tokenHash = hashToken(token);
    await this.store.putApiToken({ tokenHash, role, label, createdMs: nowMs, revokedMs: null });
    return { token, principal: { role, label, tokenId: tokenHash.slice(0, 12) } };
  }

  /** Registers a token whose text the caller already holds (a token file from an earlier start). */
  async register(token: string, role: Role, label: string, nowMs: number): Promise<void> {
    await this.store.putApiToken({
      tokenHash: hashToken(token),
      role,
      label,
      createdMs: nowMs,
      revokedMs: null,
    });
  }

  /** Revokes a token given as its text; true when it was live. */
  async revoke(token: string, nowMs: number): Promise<boolean> {
    this.cache.clear();
    return this.store.revokeApiToken(hashToken(token), nowMs);
  }

  /** The principal of a bearer token; UNAUTHORIZED for a missing, unknown or revoked one. */
  async authenticate(token: string | null | undefined): Promise<Principal> {
    if (token === null || token === undefined || token === "") {
      throw new HeadendError("UNAUTHORIZED", "missing API token (Authorization: Bearer <token>)");
    }
    if (token.length > TOKEN_CHARS_MAX) throw new HeadendError("UNAUTHORIZED", "API token too long");
    const tokenHash = hashToken(token);
    const cached = this.cache.get(tokenHash);
    if (cached !== undefined) return cached;
    const row = await this.store.findApiToken(tokenHash);
    if (row === null || row.revokedMs !== null || !isRole(row.role)) {
      throw new HeadendError("UNAUTHORIZED", "unknown or revoked API token");
    }
    const principal: Principal = { role: row.role, label: row.label, tokenId: tokenHash.slice(0, 12) };
    if (this.cache.size >= TOKEN_CACHE_MAX) this.cache.clear();
    this.cache.set(tokenHash, principal);
    return principal;
  }
}

export function requireRole(principal: Principal, needed: Role, where: string): void {
  if (!roleAtLeast(principal.role, needed)) {
    throw new HeadendError("FORBIDDEN", `needs the ${needed} role, the token has ${principal.role}`, where);
  }
}
