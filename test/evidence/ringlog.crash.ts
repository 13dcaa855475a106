// Crash suite (npm run test:crash): AtomicRingLog through ≥ 10,000 random power cuts — torn page writes,
// cuts mid-erase, cuts between operations — across three NOR geometries and ring sizes of 2–6 sectors,
// then a ghost-read campaign with bit flips on every read. Invariants: see ringlog-harness.ts.
// AMIPROOF_CRASH_CUTS sets the power-cut count, AMIPROOF_CRASH_SEED the base seed (a failure names its seed).
import assert from "node:assert/strict";
import { test } from "node:test";
import { addResults, emptyResult, GEOMETRIES, runPowerCutCampaign } from "./ringlog-harness.ts";

const CUTS = Number(process.env.AMIPROOF_CRASH_CUTS ?? 10_000);
const FLIP_CUTS = Math.ceil(CUTS / 10);
const BASE_SEED = Number(process.env.AMIPROOF_CRASH_SEED ?? 20_020_507);
const CUTS_PER_CAMPAIGN = 250;

test("AtomicRingLog survives ≥ 10,000 random power cuts and ghost reads", () => {
  const clean = emptyResult();
  for (let campaign = 0; clean.cutPoints < CUTS; campaign++) {
    addResults(
      clean,
      runPowerCutCampaign({
        seed: BASE_SEED + campaign,
        cuts: Math.min(CUTS_PER_CAMPAIGN, CUTS - clean.cutPoints),
        geometry: GEOMETRIES[campaign % GEOMETRIES.length]!,
        regionSectors: 2 + (campaign % 5),
      }),
    );
  }
  const ghosts = emptyResult();
  for (let campaign = 0; ghosts.cutPoints < FLIP_CUTS; campaign++) {
    addResults(
      ghosts,
      runPowerCutCampaign({
        seed: BASE_SEED + 1_000_000 + campaign,
        cuts: Math.min(CUTS_PER_CAMPAIGN, FLIP_CUTS - ghosts.cutPoints),
        geometry: GEOMETRIES[campaign % GEOMETRIES.length]!,
        regionSectors: 3 + (campaign % 3),
        readBitFlipRate: 1e-4 * (1 + (campaign % 5)),
      }),
    );
  }
  assert.ok(clean.cutPoints >= CUTS);
  assert.ok(clean.cutsMidErase > 0 && clean.tornSlotsSeen > 0);
  assert.ok(ghosts.readBitFlips > 0);
  console.log(`AtomicRingLog cut points: ${clean.cutPoints + ghosts.cutPoints}`);
  console.log(
    `AtomicRingLog detail: clean=${clean.cutPoints} (mid-erase ${clean.cutsMidErase}, between operations ${clean.cutsBetweenOperations}), ` +
      `ghost-read=${ghosts.cutPoints} (bit flips ${ghosts.readBitFlips}, most CHAIN_BREAK records in a window ${ghosts.chainBreaksLogged}), ` +
      `recoveries ${clean.opens + ghosts.opens}, acknowledged appends ${clean.acknowledged + ghosts.acknowledged}`,
  );
});
