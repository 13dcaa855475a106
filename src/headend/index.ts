// Public API of src/headend. Other folders import only this file.
export * from "./core/alerts.ts";
export * from "./core/auth.ts";
export * from "./core/export.ts";
export * from "./core/gaps.ts";
export * from "./core/ingest.ts";
export * from "./core/loss.ts";
export * from "./core/metrics.ts";
export * from "./core/prepared.ts";
export * from "./core/registry.ts";
export * from "./core/views.ts";
export * from "./errors.ts";
export * from "./runtime/api.ts";
export * from "./runtime/broker.ts";
export * from "./runtime/headend.ts";
export * from "./runtime/mqtt.ts";
export * from "./runtime/verifier-pool.ts";
export * from "./store/index.ts";
