// Vite builds the dashboard into web/dist, which the head-end serves at `/` (src/headend/runtime/static.ts).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root,
  base: "/",
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // uPlot is the only dependency; one chunk keeps the first load to two requests.
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npx vite web` during development: the API from a head-end running on the default port.
    proxy: { "/api": "http://127.0.0.1:8080", "/openapi.json": "http://127.0.0.1:8080" },
  },
});
