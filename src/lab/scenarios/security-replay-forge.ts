import {
  alertsTopic,
  batchesTopic,
  decodeAlert,
  decodeBatch,
  encodeAlert,
  encodeBatch,
  genesisDigest,
  MemorySecureElement,
  sealBatch,
  sealEventRecord,
} from "../../evidence/index.ts";
import { loopScenario } from "../loop/scenario.ts";
import type { LoopWorld } from "../loop/world.ts";
import { predicate } from "../scenario.ts";

// seed 003 H2-6 and H2-11 "Security — rollback & signature-fail", at the head-end's door: an attacker on
// the backhaul replays captured batches (identical, and onto another concentrator's topic), forges a
// batch under the concentrator's name with its own key, edits a reading inside a captured batch (log
// edit), replays and forges meter alerts, and edits the head-end's audit log. Require: every attack
// refused with its typed reason and counted, nothing of it stored, failures deterministic, the audit
// log's hash chain exposes the edit. (Firmware rollback is the firmware campaign's scenario.)

const START_MS = Date.UTC(2026, 4, 5, 12);
const MINUTE = 60_000;

type AttackKind =
  | "replay_identical"
  | "replay_cross_topic"
  | "forged_signature"
  | "record_edit"
  | "alert_replay"
  | "alert_forged";

interface Attack {
  readonly kind: AttackKind;
  readonly atMs: number;
  batchId: number | null;
  /** Outcomes that refuse it correctly. */
  readonly expected: readonly string[];
}

const attacks = new WeakMap<object, Attack[]>();

function launch(world: LoopWorld, kind: AttackKind, list: Attack[], rngByte: number): void {
  const captured = world.capturedBatches;
  const source = captured[Math.max(0, captured.length - 1 - (rngByte % Math.min(8, captured.length || 1)))];
  const attack: Attack = {
    kind,
    atMs: world.nowMs,
    batchId: null,
    // An edited byte fails the record CRC, or its decode first when it lands in a length or a value.
    expected:
      kind === "replay_identical"
        ? ["duplicate"]
        : kind === "replay_cross_topic"
          ? ["DCU_MISMATCH"]
          : kind === "forged_signature"
            ? ["BAD_SIGNATURE"]
            : kind === "record_edit"
              ? ["BAD_CRC", "BAD_MERKLE_ROOT", "BAD_SIGNATURE", "BAD_FIELD", "TRUNCATED"]
              : kind === "alert_replay"
                ? ["REPLAY"]
                : ["BAD_SIGNATURE"],
  };
  if (kind === "alert_replay" || kind === "alert_forged") {
    const alert = world.capturedAlerts[world.capturedAlerts.length - 1];
    if (alert === undefined) return;
    if (kind === "alert_replay") {
      world.inject(alertsTopic(world.dcuId), alert);
    } else {
      const message = decodeAlert(alert);
      const forger = new MemorySecureElement(message.meterId, Uint8Array.of(0x66, rngByte));
      const record = sealEventRecord(
        {
          meterId: message.meterId,
          seq: 10_000 + rngByte,
          type: "COVER_OPEN",
          level: "MAJOR",
          timestampMs: world.nowMs,
          startMs: world.nowMs,
          endMs: null,
          timeQuality: "SYNCED",
          snapshot: {},
          prevDigest: genesisDigest(message.meterId),
        },
        (m) => forger.sign("event_seal", m),
      );
      world.inject(
        alertsTopic(world.dcuId),
        encodeAlert({ ...message, record: record.bytes, forwardedMs: world.nowMs }),
      );
    }
    list.push(attack);
    return;
  }
  if (source === undefined) return;
  const batch = decodeBatch(source);
  attack.batchId = batch.header.batchId;
  if (kind === "replay_identical") {
    world.inject(batchesTopic(world.dcuId), source);
  } else if (kind === "replay_cross_topic") {
    world.inject(batchesTopic("DCU-OTHER"), source);
  } else if (kind === "forged_signature") {
    const attacker = new MemorySecureElement(world.dcuId, Uint8Array.of(0xa7, rngByte));
    const forged = sealBatch(
      {
        batchId: batch.header.batchId,
        dcuId: world.dcuId,
        epoch: batch.header.epoch,
        createdMs: world.nowMs,
        records: batch.records,
        prevBatchHash: batch.header.prevBatchHash,
      },
      (m) => attacker.sign("batch_sign", m),
    );
    world.inject(batchesTopic(world.dcuId), encodeBatch(forged));
  } else {
    const edited = source.slice();
    const at = edited.length - 8 - (rngByte % 16);
    edited[at] = (edited[at] as number) ^ 0x01;
    world.inject(batchesTopic(world.dcuId), edited);
  }
  list.push(attack);
}

export const securityReplayForge = loopScenario({
  name: "security-replay-forge",
  description:
    "replayed, cross-topic, forged and edited batches, replayed and forged alerts, an audit-log edit",
  source: "seed 003 H2-6 and H2-11 Security; seed 004 anti-replay (0xF2)",
  defaultMeters: 6,
  safeguards: [],
  startMs: START_MS,
  durationMs: 45 * MINUTE,
  options: () => ({ config: { batchAgeMaxMs: 20_000 } }),
  faults(world, ctx) {
    const rng = ctx.rng.fork("attacks");
    const list: Attack[] = [];
    attacks.set(world, list);
    // Genuine tamper events, so there are alerts to capture.
    for (let i = 0; i < 3; i++) {
      const meterId = rng.pick(world.meterIds);
      world.sim.at(START_MS + (3 + i * 4) * MINUTE + rng.nextInt(MINUTE), () =>
        world.meterEvent(meterId, "COVER_OPEN", "MAJOR", { lab: "genuine" }),
      );
    }
    const kinds: AttackKind[] = [
      "replay_identical",
      "replay_cross_topic",
      "forged_signature",
      "record_edit",
      "alert_replay",
      "alert_forged",
    ];
    for (let i = 0; i < 12; i++) {
      const kind = kinds[i % kinds.length] as AttackKind;
      const byte = rng.nextInt(256);
      world.sim.at(START_MS + (16 + i * 2) * MINUTE + rng.nextInt(MINUTE), () =>
        launch(world, kind, list, byte),
      );
    }
    // The audit log: operator actions, then an insider edits one entry in the database.
    world.sim.at(START_MS + 40 * MINUTE, () =>
      world.later(async () => {
        for (let i = 0; i < 5; i++)
          await world.store.appendAudit({
            atMs: world.nowMs + i,
            actor: "operator",
            action: "alert.ack",
            detail: { i },
          });
      }),
    );
  },
  async extra(world, view) {
    const list = attacks.get(world) as Attack[];
    let refused: string | null = null;
    const outcomes = world.ingestOutcomes;
    for (const a of list) {
      if (a.kind === "alert_replay" || a.kind === "alert_forged") continue;
      const ok = outcomes.some(
        (o) =>
          (o.kind === "duplicate" && a.expected.includes("duplicate") && o.batchId === a.batchId) ||
          (o.kind === "rejected" &&
            a.expected.includes(o.reason) &&
            (o.batchId === a.batchId || a.kind === "replay_cross_topic")),
      );
      if (!ok)
        refused ??= `${a.kind} of batch ${a.batchId} at +${(a.atMs - START_MS) / 1000} s: no outcome in ${a.expected.join("/")}`;
    }
    const alertRejected = world.alertOutcomes
      .filter((o) => o.kind === "rejected")
      .map((o) => (o as { reason: string }).reason);
    const replays = list.filter((a) => a.kind === "alert_replay").length;
    const forged = list.filter((a) => a.kind === "alert_forged").length;
    const replayRefused = alertRejected.filter((r) => r === "REPLAY").length;
    const forgedRefused = alertRejected.filter((r) => r === "BAD_SIGNATURE").length;
    // The insider edit: one audit row changed behind the store's back.
    const raw = (
      world.store as unknown as { rawConnection?: () => { exec(sql: string): void } }
    ).rawConnection?.();
    raw?.exec("UPDATE audit SET actor = 'nobody' WHERE seq = 2");
    const audit = await world.store.verifyAudit();
    const counted = world.metrics.rejectedBatchesTotal();
    const rejectedAttacks = list.filter(
      (a) => a.kind !== "replay_identical" && !a.kind.startsWith("alert"),
    ).length;
    return [
      predicate(
        "every_attack_refused_with_its_reason",
        refused === null && replayRefused >= replays && forgedRefused >= forged,
        refused ??
          `${list.length} attacks: batches refused ${JSON.stringify(Object.fromEntries(world.metrics.batchesRejected))}; alerts refused REPLAY ${replayRefused}/${replays}, BAD_SIGNATURE ${forgedRefused}/${forged}`,
      ),
      predicate(
        "attacks_counted",
        counted >= rejectedAttacks,
        `${counted} batch rejections counted for ${rejectedAttacks} rejectable batch attacks`,
      ),
      predicate(
        "nothing_of_an_attack_stored",
        view.readings === world.ledger.committed.size,
        `${view.readings} readings stored for ${world.ledger.committed.size} genuine commits`,
      ),
      predicate(
        "audit_log_edit_detected",
        raw !== undefined && !audit.ok && audit.problem?.seq === 2,
        audit.ok
          ? "audit chain verified although entry 2 was edited"
          : `audit chain: entry ${audit.problem?.seq}: ${audit.problem?.message}`,
      ),
    ];
  },
  figures(world) {
    return { attacks: (attacks.get(world) as Attack[]).length };
  },
});
