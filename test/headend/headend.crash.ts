// Crash suite (npm run test:crash): the head-end kill test of kill.test.ts with 20 SIGKILLs.
process.env.AMIPROOF_HEADEND_KILLS ??= "20";
await import("./kill.test.ts");
