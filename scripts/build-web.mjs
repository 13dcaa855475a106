#!/usr/bin/env node
// Builds the web dashboard (web/ → web/dist) with Vite. `--if-needed`: only when web/dist is missing or
// older than a source file (`npm start` runs this first, so `npm ci && npm start` works on a fresh clone).
// Without Vite installed (`npm ci --omit=dev`) it says so and exits 0: the head-end then answers `/` with
// a page explaining how to build the dashboard.
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const web = join(root, "web");
const dist = join(web, "dist", "index.html");

function newestMtimeMs(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtimeMs(join(path, name)));
  return newest;
}

function isStale() {
  if (!existsSync(dist)) return true;
  const built = statSync(dist).mtimeMs;
  const sources = ["index.html", "src", "public", "vite.config.ts"]
    .map((p) => join(web, p))
    .filter(existsSync);
  return sources.some((p) => newestMtimeMs(p) > built);
}

const ifNeeded = process.argv.includes("--if-needed");
if (ifNeeded && !isStale()) {
  console.error("build:web: web/dist is up to date");
  process.exit(0);
}
let vite;
try {
  vite = await import("vite");
} catch {
  console.error(
    "build:web: vite is not installed (npm ci without dev dependencies?) — the dashboard is not built;",
  );
  console.error(
    "           the head-end still runs and answers / with instructions. Run `npm ci && npm run build:web`.",
  );
  process.exit(ifNeeded ? 0 : 1);
}
const started = Date.now();
await vite.build({ configFile: join(web, "vite.config.ts"), logLevel: "warn" });
console.error(`build:web: built web/dist in ${Date.now() - started} ms`);
