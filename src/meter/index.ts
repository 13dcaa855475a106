// Public API of src/meter: the virtual meter and its parts. Only src/cli and src/lab import it.
export * from "./calibration.ts";
export * from "./cosem.ts";
export * from "./firmware/index.ts";
export * from "./load.ts";
export * from "./load-profile.ts";
export * from "./meter.ts";
export * from "./metrology.ts";
export * from "./nvm-layout.ts";
export * from "./rollback-command.ts";
export * from "./rtc.ts";
export * from "./tamper.ts";
