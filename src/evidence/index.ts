// Public API of the evidence core. Other folders import only this file.
export * from "./batch.ts";
export * from "./bundle.ts";
export * from "./bytes.ts";
export * from "./crypto.ts";
export * from "./errors.ts";
export * from "./event-chain.ts";
export * from "./journal.ts";
export * from "./journal-storage.ts";
export * from "./merkle.ts";
export * from "./nvm.ts";
export * from "./nvm-types.ts";
export * from "./random.ts";
export * from "./records.ts";
export * from "./ringlog.ts";
export * from "./sample.ts";
export * from "./secure-element.ts";
export * from "./uplink-wire.ts";
