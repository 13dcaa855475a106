import { concentratorSuite } from "./concentrator.ts";
import { cryptoSuite } from "./crypto.ts";
import { dlmsSuite } from "./dlms.ts";
import { headendSuite } from "./headend.ts";
import { journalSuite } from "./journal.ts";
import { labSuite } from "./lab.ts";
import { meterSuite } from "./meter.ts";
import { storeSuite } from "./store.ts";
import type { BenchSuite } from "./types.ts";

// Each issue adds its suite here; figure names are part of the command-line contract (DESIGN.md).
export const BENCH_SUITES: readonly BenchSuite[] = [
  cryptoSuite,
  journalSuite,
  meterSuite,
  dlmsSuite,
  concentratorSuite,
  labSuite,
  storeSuite,
  headendSuite,
];
