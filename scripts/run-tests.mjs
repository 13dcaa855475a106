#!/usr/bin/env node
// Node 20's test runner has no glob support: collect the files here, then hand them to `node --test`.
// usage: node scripts/run-tests.mjs SUFFIX [DIR...]   e.g. `.test.ts`, `.crash.ts`
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const [suffix = ".test.ts", ...dirs] = process.argv.slice(2);
const roots = dirs.length > 0 ? dirs : ["test"];

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith(suffix)) out.push(path);
  }
  return out;
}

const files = roots.flatMap((root) => collect(root, []));
if (files.length === 0) {
  console.error(`no test files ending in ${suffix} under ${roots.join(", ")}`);
  process.exit(1);
}
const concurrency = process.env.AMIPROOF_TEST_CONCURRENCY ?? "2";
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, ...files],
  { stdio: "inherit" },
);
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
