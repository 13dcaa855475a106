// Public API of the evidence core. Other folders import only this file.
export * from "./bytes.ts";
export * from "./crypto.ts";
export * from "./errors.ts";
export * from "./nvm-types.ts";
export * from "./secure-element.ts";
