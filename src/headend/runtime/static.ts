// shell: serves the built web dashboard (web/dist, `npm run build:web`) at `/` (its read-only endpoints are
// in dashboard-routes.ts, in the API's route table). Plain files from one folder: index.html (never cached) and content-hashed assets
// (cached for good). Without a build, `/` answers with a page that says how to make one.
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";

export const WEB_DIST_DIR = resolve(import.meta.dirname, "../../../web/dist");
/** A file larger than this in web/dist is not served (the built dashboard is a few hundred KB). */
export const WEB_FILE_BYTES_MAX = 8 * 1024 * 1024;

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".woff2": "font/woff2",
};

// The dashboard loads only its own files and talks only to this origin.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export function notBuiltPage(distDir: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>amiproof — dashboard not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}code{background:#eef1f4;padding:.1rem .3rem;border-radius:3px}</style>
</head><body>
<h1>The amiproof dashboard is not built</h1>
<p>The head-end is running and its API answers (see <a href="/openapi.json">/openapi.json</a> and <a href="/health">/health</a>),
but there are no dashboard files in <code>${escapeHtml(distDir)}</code>.</p>
<p>Build them with <code>npm run build:web</code> (<code>npm start</code> does this on its own), then reload this page.</p>
</body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sendFile(reply: FastifyReply, path: string, immutable: boolean): FastifyReply {
  const type = CONTENT_TYPES[extname(path)] ?? "application/octet-stream";
  reply.header("content-type", type);
  reply.header("x-content-type-options", "nosniff");
  reply.header("cache-control", immutable ? "public, max-age=31536000, immutable" : "no-cache");
  if (type.startsWith("text/html")) reply.header("content-security-policy", CSP);
  return reply.send(readFileSync(path));
}

/** The dashboard's files on the API's Fastify instance. */
export function registerWeb(app: FastifyInstance, distDir = WEB_DIST_DIR): void {
  const root = resolve(distDir);
  const serveIndex = async (_request: unknown, reply: FastifyReply) => {
    const index = join(root, "index.html");
    if (!existsSync(index)) {
      reply.header("cache-control", "no-cache");
      return reply.status(200).type("text/html; charset=utf-8").send(notBuiltPage(root));
    }
    return sendFile(reply, index, false);
  };
  app.get("/", serveIndex);
  app.get("/index.html", serveIndex);
  app.get("/favicon.svg", async (_request, reply) => serveAsset(reply, "favicon.svg", false));
  app.get("/assets/*", async (request, reply) => {
    const rest = (request.params as Record<string, string>)["*"] ?? "";
    return serveAsset(reply, `assets/${rest}`, true);
  });

  function serveAsset(reply: FastifyReply, relative: string, immutable: boolean) {
    const path = resolve(root, relative);
    // No way out of the folder (../, encoded or not: Fastify has decoded the path already).
    if (!path.startsWith(root + sep) || relative.includes("\0")) {
      return reply.status(404).send({ error: "NOT_FOUND", message: "no such file" });
    }
    let size = -1;
    try {
      const stat = statSync(path);
      if (stat.isFile()) size = stat.size;
    } catch {
      size = -1;
    }
    if (size < 0 || size > WEB_FILE_BYTES_MAX) {
      return reply.status(404).send({ error: "NOT_FOUND", message: `no such file: /${relative}` });
    }
    return sendFile(reply, path, immutable);
  }
}
