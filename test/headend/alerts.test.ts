import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { type EventRecord, encodeAlert } from "../../src/evidence/index.ts";
import {
  AGGREGATION_WINDOW_MS,
  AlertHub,
  AlertLane,
  type AlertLaneEvent,
  type AlertOutcome,
  HeadendMetrics,
  type HeadendStore,
  isStoreError,
  KeyRegistry,
} from "../../src/headend/index.ts";
import { backends, recordingLog, type StoreHarness, T0, TestMeter } from "./helpers.ts";

// The alert lane on its own store connection: verified, deduplicated on the meter's seq (a replay is
// refused), stored and pushed; minor anomalies aggregated; acknowledged and resolved by an operator.

interface Rig {
  readonly lane: AlertLane;
  readonly store: HeadendStore;
  readonly pushed: AlertLaneEvent[];
  readonly outcomes: AlertOutcome[];
  readonly metrics: HeadendMetrics;
  readonly log: ReturnType<typeof recordingLog>;
  clock: { now: number };
  send(record: EventRecord, dcuId?: string): Promise<AlertOutcome>;
}

async function rig(harness: StoreHarness, meters: readonly TestMeter[]): Promise<Rig> {
  // The lane gets its own connection, as the runtime wires it.
  const store = await harness.open();
  const registry = new KeyRegistry(store);
  await registry.registerMeters(
    meters.map((m) => ({ meterId: m.meterId, eventSealPublicKey: m.publicKey, transformerId: "TR-1" })),
    T0,
  );
  const hub = new AlertHub();
  const pushed: AlertLaneEvent[] = [];
  hub.subscribe((e) => pushed.push(e));
  const outcomes: AlertOutcome[] = [];
  const metrics = new HeadendMetrics();
  const log = recordingLog();
  const clock = { now: T0 + 60_000 };
  const lane = new AlertLane({
    store,
    registry,
    metrics,
    log,
    hub,
    nowMs: () => clock.now,
    onOutcome: (o) => outcomes.push(o),
  });
  return {
    lane,
    store,
    pushed,
    outcomes,
    metrics,
    log,
    clock,
    async send(record, dcuId = "DCU-1") {
      const payload = encodeAlert({
        dcuId,
        meterId: record.meterId,
        record: record.bytes,
        forwardedMs: T0 + 1,
        timeQuality: "SYNCED",
      });
      assert.ok(lane.submit(dcuId, payload));
      await lane.drain();
      return outcomes[outcomes.length - 1] as AlertOutcome;
    },
  };
}

for (const backend of backends("alerts.test")) {
  describe(`alert lane on ${backend.name}`, () => {
    const harnesses: StoreHarness[] = [];
    const fresh = async () => {
      const h = await backend.fresh();
      harnesses.push(h);
      return h;
    };
    after(async () => {
      for (const h of harnesses) await h.cleanup();
    });

    test("a sealed tamper alert is verified, stored, pushed, and marks the meter tampered until cleared", async () => {
      const meter = new TestMeter("MTR-1");
      const r = await rig(await fresh(), [meter]);
      const open = meter.event("COVER_OPEN", "MAJOR", T0 + 59_990, { debounce_ms: 50 });
      const outcome = await r.send(open);
      assert.equal(outcome.kind, "stored");
      assert.equal(outcome.kind === "stored" && outcome.latencyMs, 10);
      assert.equal(r.pushed.length, 1);
      assert.equal(r.pushed[0]?.alert.type, "COVER_OPEN");
      assert.equal(r.pushed[0]?.alert.counter, 1);
      const listed = await r.store.listAlerts({ state: "open" });
      assert.equal(listed.items.length, 1);
      assert.equal(listed.items[0]?.verified, true);
      assert.equal((await r.store.getMeter("MTR-1"))?.tamperState, "COVER_OPEN");
      const events = await r.store.listEvents("MTR-1", 0, T0 * 2);
      assert.equal(events.items.length, 1);

      const cleared = meter.event("TAMPER_CLEARED", "INFO", T0 + 70_000, {
        tamper: "COVER_OPEN",
        open_ms: 10_000,
      });
      assert.equal((await r.send(cleared)).kind, "event");
      assert.equal((await r.store.getMeter("MTR-1"))?.tamperState, "CLEAR");
      assert.equal(r.pushed.length, 1, "an INFO event is evidence, not an alert");
      assert.equal(r.metrics.alertLatencyMs.quantile(0.99), 10);
    });

    test("a replayed alert is refused: counted, logged, not stored or pushed twice", async () => {
      const meter = new TestMeter("MTR-1");
      const h = await fresh();
      const r = await rig(h, [meter]);
      const magnet = meter.event("MAG_TAMPER", "MAJOR", T0, { field_mt: 80 });
      assert.equal((await r.send(magnet)).kind, "stored");
      const again = await r.send(magnet);
      assert.equal(again.kind === "rejected" && again.reason, "REPLAY");
      // A restarted lane (no memory of the first) still refuses it: the store holds (meter_id, seq).
      const restarted = await rig(h, [meter]);
      const third = await restarted.send(magnet);
      assert.equal(third.kind === "rejected" && third.reason, "REPLAY");
      assert.equal((await r.store.listAlerts({})).items.length, 1);
      assert.equal(r.pushed.length, 1);
      assert.equal(restarted.pushed.length, 0);
      assert.equal(r.metrics.alertsRejected.get("REPLAY"), 1);
      assert.ok(r.log.lines.some((l) => l.message === "alert refused as a replay"));
    });

    test("forged, unknown and misrouted alerts are refused and nothing of them is stored", async () => {
      const meter = new TestMeter("MTR-1");
      const impostor = new TestMeter("MTR-1", 66); // the same meter_id, another key
      const stranger = new TestMeter("MTR-9", 3);
      const r = await rig(await fresh(), [meter]);
      const forged = await r.send(impostor.event("REV_CURRENT", "MAJOR", T0));
      const unknown = await r.send(stranger.event("COVER_OPEN", "MAJOR", T0));
      const payload = encodeAlert({
        dcuId: "DCU-2",
        meterId: "MTR-1",
        record: meter.event("TILT", "MAJOR", T0).bytes,
        forwardedMs: T0,
        timeQuality: "SYNCED",
      });
      assert.ok(r.lane.submit("DCU-1", payload));
      await r.lane.drain();
      const misrouted = r.outcomes[r.outcomes.length - 1] as AlertOutcome;
      assert.equal(forged.kind === "rejected" && forged.reason, "BAD_SIGNATURE");
      assert.equal(unknown.kind === "rejected" && unknown.reason, "UNKNOWN_METER");
      assert.equal(misrouted.kind === "rejected" && misrouted.reason, "DCU_MISMATCH");
      const garbage = r.lane.submit("DCU-1", new TextEncoder().encode("{not json"));
      assert.ok(garbage);
      await r.lane.drain();
      assert.equal(r.metrics.alertsRejected.get("BAD_MESSAGE"), 1);
      assert.equal((await r.store.listEvents("MTR-1", 0, T0 * 2)).items.length, 0);
      // The forged signature and the unknown meter are themselves raised as head-end alerts (seed 004 0xF2).
      await r.lane.close();
      const raised = (await r.store.listAlerts({})).items.map((a) => a.type).sort();
      assert.deepEqual(raised, ["ALERT_BAD_SIGNATURE", "ALERT_UNKNOWN_METER"]);
      assert.ok(r.pushed.every((e) => e.alert.meterId === ""));
    });

    test("minor anomalies are aggregated into one alert when the window closes", async () => {
      const meter = new TestMeter("MTR-1");
      const r = await rig(await fresh(), [meter]);
      for (let i = 0; i < 3; i++) {
        const outcome = await r.send(meter.event("MAG_SUSPECT", "MINOR", T0 + i * 1000, { field_mt: 55 }));
        assert.equal(outcome.kind, "aggregating");
      }
      await r.lane.tick();
      assert.equal((await r.store.listAlerts({})).items.length, 0, "the window is still open");
      r.clock.now += AGGREGATION_WINDOW_MS;
      await r.lane.tick();
      const alerts = (await r.store.listAlerts({})).items;
      assert.equal(alerts.length, 1);
      assert.equal(alerts[0]?.type, "ANOMALY_AGGREGATE");
      assert.equal(alerts[0]?.aggregatedCount, 3);
      assert.equal(alerts[0]?.snapshot.MAG_SUSPECT, 3);
      assert.equal(alerts[0]?.counter, 3);
      assert.equal(
        (await r.store.listEvents("MTR-1", 0, T0 * 2)).items.length,
        3,
        "every anomaly kept as evidence",
      );
    });

    test("an operator acknowledges then resolves an alert; every change is pushed", async () => {
      const meter = new TestMeter("MTR-1");
      const r = await rig(await fresh(), [meter]);
      const stored = await r.send(meter.event("NEUTRAL_MISS", "MAJOR", T0));
      assert.equal(stored.kind, "stored");
      const id = stored.kind === "stored" ? stored.alert.alertId : -1;
      assert.equal(r.pushed.at(-1)?.alert.snapshot.error_code, "0x04");
      const acked = await r.lane.acknowledge(id, "operator-1");
      assert.equal(acked.state, "acknowledged");
      const resolved = await r.lane.resolve(id, "operator-1");
      assert.equal(resolved.state, "resolved");
      assert.deepEqual(
        r.pushed.map((e) => [e.kind, e.alert.state]),
        [
          ["alert", "open"],
          ["alert_update", "acknowledged"],
          ["alert_update", "resolved"],
        ],
      );
      await assert.rejects(r.lane.acknowledge(id, "operator-1"), (e: unknown) =>
        isStoreError(e, "BAD_STATE"),
      );
    });
  });
}
