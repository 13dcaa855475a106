// Public API of src/mbus. Other folders import only this file.
export * from "./datetime.ts";
export * from "./errors.ts";
export * from "./frame.ts";
export * from "./hex.ts";
export * from "./json.ts";
export * from "./master.ts";
export * from "./records.ts";
export * from "./runtime/tcp-bridge.ts";
export * from "./sim.ts";
export * from "./tables.ts";
export * from "./telegram.ts";
export * from "./vif.ts";
