export * from "./boot-config.ts";
export * from "./errors.ts";
export * from "./image.ts";
export * from "./manager.ts";
export * from "./pki.ts";
export * from "./pki-generate.ts";
export * from "./transitions.ts";
export * from "./watchdog.ts";
