// Public API of src/lab: the virtual-time engine, the scenarios and their runner, the failure-mode router.
export * from "./diagnose.ts";
export * from "./engine.ts";
export * from "./registry.ts";
export * from "./scenario.ts";
export { FLEET_DAY_FULL_METERS_MAX } from "./scenarios/fleet-day.ts";
