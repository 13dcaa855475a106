// Public API of src/concentrator. Other folders import only this file.
export * from "./core/backoff.ts";
export * from "./core/concentrator.ts";
export * from "./core/evidence-packs.ts";
export * from "./core/firmware-jobs.ts";
export * from "./core/mbus-source.ts";
export type * from "./core/ports.ts";
export * from "./core/pulse.ts";
export * from "./core/time-quality.ts";
export * from "./core/uplink.ts";
export * from "./core/wire.ts";
export * from "./errors.ts";
export * from "./memory.ts";
export * from "./runtime/daemon.ts";
export * from "./runtime/file-store.ts";
export * from "./runtime/journal.ts";
export * from "./runtime/mqtt-link.ts";
export * from "./sim.ts";
