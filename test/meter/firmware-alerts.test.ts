import assert from "node:assert/strict";
import { test } from "node:test";
import { MemorySecureElement } from "../../src/evidence/index.ts";
import { type FirmwareImage, type FirmwareManager, Meter } from "../../src/meter/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, HW, image, layout, NOW, pki } from "./firmware-harness.ts";

const BLOCK_BYTES = 512;

/** IC 18 style through the meter's manager: initiate, blocks, verify (refusals throw), activate. */
function send(fw: FirmwareManager, img: FirmwareImage): void {
  fw.initiateTransfer(img.component, img.bytes.length, BLOCK_BYTES);
  for (let n = 0; n * BLOCK_BYTES < img.bytes.length; n++) {
    fw.receiveBlock(
      n,
      img.bytes.subarray(n * BLOCK_BYTES, Math.min((n + 1) * BLOCK_BYTES, img.bytes.length)),
    );
  }
  fw.verify();
  fw.activate();
}

// seed 002 H2-6 FW_ROLLBACK and seed 004 SIG_FAIL (0xF2) are tamper claims like the sensor rules: the
// meter's firmware manager seals them into the meter's log and the meter pushes them as alerts.

test("firmware through the meter: a forged image is SIG_FAIL (0xF2), an older one FW_ROLLBACK; both sealed and queued as alerts", () => {
  const meter = Meter.open(
    {
      id: "MTR-FWA",
      secureElement: new MemorySecureElement("MTR-FWA", Uint8Array.of(9)),
      layout,
      factoryTimeMs: NOW,
    },
    NOW,
  );
  const fw: FirmwareManager = meter.attachFirmware(
    { caCertificateDer: pki.ca.certificateDer },
    HW,
    () => NOW,
  );
  fw.provision(GOLDEN_APP, GOLDEN_COMMS);
  fw.boot();
  meter.takeAlerts();

  const forged = image("app", 1_002_000);
  const bytes = forged.bytes.slice();
  bytes[bytes.length - 5]! ^= 0x01;
  assert.throws(() => send(fw, { ...forged, bytes }), { code: "SIGN_AUTH_FAIL" });
  assert.throws(() => send(fw, image("app", 999_000)), { code: "VERSION_ROLLBACK_REFUSED" });

  const alerts = meter.takeAlerts();
  assert.deepEqual(
    alerts.map((r) => r.type),
    ["SIG_FAIL", "FW_ROLLBACK"],
  );
  assert.equal(alerts[0]!.snapshot.error_code, "0xF2");
  const sealed = meter.eventLog().filter((r) => r.type === "SIG_FAIL" || r.type === "FW_ROLLBACK");
  assert.deepEqual(
    sealed.map((r) => r.seq),
    alerts.map((r) => r.seq),
    "the alerts are the sealed records themselves (monotonic seq + timestamp: anti-replay)",
  );
  assert.ok(alerts[0]!.seq < alerts[1]!.seq);
});
