import { join } from "node:path";
import { StoreError } from "./errors.ts";
import { PostgresStore } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";
import type { HeadendStore } from "./types.ts";

// Store URLs (DESIGN.md `amiproof headend --db URL`):
//   sqlite:PATH           a database file (created with its directory), e.g. sqlite:data/headend.db
//   sqlite::memory:       a private in-memory database (lab, tests)
//   postgres://…          PostgreSQL (also postgresql://…); ?schema=NAME selects and creates a schema

export type StoreLocation =
  | { readonly kind: "sqlite"; readonly path: string }
  | { readonly kind: "postgres"; readonly url: string };

export function parseStoreUrl(url: string): StoreLocation {
  if (url.startsWith("sqlite:")) {
    let path = url.slice("sqlite:".length);
    // sqlite:///abs/path is accepted as the URL spelling of /abs/path.
    if (path.startsWith("//")) path = path.slice(2);
    if (path === "") throw new StoreError("BAD_URL", "sqlite: URL without a path (sqlite:PATH)", url);
    return { kind: "sqlite", path };
  }
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    try {
      new URL(url);
    } catch {
      throw new StoreError("BAD_URL", "not a valid postgres:// URL", redactUrl(url));
    }
    return { kind: "postgres", url };
  }
  throw new StoreError(
    "BAD_URL",
    `store URL must be sqlite:PATH or postgres://…, got "${redactUrl(url)}"`,
    "openStore",
  );
}

/** `--data DIR` default: one SQLite file in the data directory. */
export function defaultStoreUrl(dataDir: string): string {
  return `sqlite:${join(dataDir, "headend.db")}`;
}

export interface OpenStoreOptions {
  /** The caller's clock reading, stamped on migrations applied at open. */
  readonly nowMs: number;
  /** PostgreSQL schema (overrides ?schema=). */
  readonly schema?: string;
}

/** Opens the store a URL names and brings its schema to this build's version. */
export async function openStore(url: string, options: OpenStoreOptions): Promise<HeadendStore> {
  const location = parseStoreUrl(url);
  if (location.kind === "sqlite") return SqliteStore.open({ path: location.path, nowMs: options.nowMs });
  return PostgresStore.open({
    url: location.url,
    nowMs: options.nowMs,
    ...(options.schema === undefined ? {} : { schema: options.schema }),
  });
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@");
}
