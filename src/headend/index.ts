// Public API of src/headend. Other folders import only this file.
export * from "./store/index.ts";
