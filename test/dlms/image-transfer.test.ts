import assert from "node:assert/strict";
import { test } from "node:test";
import {
  connectDlms,
  type Data,
  IMAGE_TRANSFER_OBIS,
  listenDlms,
  parseObis,
  transferImage,
} from "../../src/dlms/index.ts";
import { MemorySecureElement } from "../../src/evidence/index.ts";
import { Meter, meterObjectModel, rollbackLog } from "../../src/meter/index.ts";
import { GOLDEN_APP, GOLDEN_COMMS, HW, image, pki } from "../meter/firmware-harness.ts";

const T0 = Date.UTC(2026, 5, 1);
const PASSWORD = new TextEncoder().encode("12345678");

async function meterOnTcp() {
  let t = T0;
  const meter = Meter.open(
    { id: "MTR-IMG", secureElement: new MemorySecureElement("MTR-IMG", Uint8Array.of(5)), factoryTimeMs: T0 },
    T0,
  );
  for (let i = 0; i < 1800; i++) {
    t += 1000;
    meter.step(t, { vRms: 230, i1Rms: 8, phiDeg: 5, frequencyHz: 50, harmonics: [] });
  }
  const firmware = meter.attachFirmware({ caCertificateDer: pki.ca.certificateDer }, HW, () => t);
  firmware.provision(GOLDEN_APP, GOLDEN_COMMS);
  firmware.boot();
  const server = await listenDlms(0, meterObjectModel({ meter, firmware, trueNowMs: () => t }), {
    lowLevelPassword: PASSWORD,
  });
  const session = async () => {
    const c = await connectDlms("127.0.0.1", server.port, 1);
    await c.client.associate({ password: PASSWORD });
    return c;
  };
  return { meter, firmware, server, session };
}

test("firmware update through image transfer (IC 18) over TCP: the meter boots it; billing registers unchanged", async () => {
  const { meter, server, session } = await meterOnTcp();
  try {
    const registersBefore = meter.registers;
    const update = image("app", 1_001_000, { size: 5000 });
    const { client, close } = await session();
    let last = 0;
    const result = await transferImage(client, "app", update.bytes, (sent) => {
      last = sent;
    });
    assert.equal(last, result.blocks);
    const id = await client.get(1, parseObis("1.0.0.2.0.255"), 2);
    assert.deepEqual(id, { type: "visible-string", value: "app 1.1.0; comms 1.0.0" });
    const signature = await client.get(1, parseObis("1.0.0.2.8.255"), 2);
    assert.deepEqual(
      (signature as { value: Uint8Array }).value,
      update.checksum,
      "remote confirmation: checksum of the running image",
    );
    assert.deepEqual(await client.get(18, IMAGE_TRANSFER_OBIS, 6), { type: "enum", value: 6 });
    close();
    assert.deepEqual(meter.registers, registersBefore);
    assert.ok(meter.eventLog().some((r) => r.type === "FW_CONFIRMED"));
  } finally {
    await server.close();
  }
});

test("an interrupted transfer resumes from image_first_not_transferred_block_number", async () => {
  const { server, session } = await meterOnTcp();
  try {
    const update = image("comms", 1_002_000, { size: 6000 });
    const first = await session();
    await first.client.action(18, IMAGE_TRANSFER_OBIS, 1, {
      type: "structure",
      value: [
        { type: "octet-string", value: new TextEncoder().encode("comms") },
        { type: "double-long-unsigned", value: update.bytes.length },
      ],
    });
    for (let n = 0; n < 4; n++) {
      await first.client.action(18, IMAGE_TRANSFER_OBIS, 2, {
        type: "structure",
        value: [
          { type: "double-long-unsigned", value: n },
          { type: "octet-string", value: update.bytes.subarray(n * 512, (n + 1) * 512) },
        ],
      });
    }
    first.close(); // the link drops mid-transfer
    const second = await session();
    const result = await transferImage(second.client, "comms", update.bytes);
    assert.equal(result.resumedFrom, 4);
    assert.deepEqual(await second.client.get(1, parseObis("1.0.0.2.0.255"), 2), {
      type: "visible-string",
      value: "app 1.0.0; comms 1.2.0",
    });
    second.close();
  } finally {
    await server.close();
  }
});

test("a corrupted image is refused at verify; the meter keeps its image and logs ERROR_CRC_MISMATCH", async () => {
  const { meter, server, session } = await meterOnTcp();
  try {
    const bad = image("app", 1_003_000).bytes.slice();
    bad[700]! ^= 0xff;
    const { client, close } = await session();
    await assert.rejects(transferImage(client, "app", bad), { code: "DATA_ACCESS_ERROR" });
    assert.deepEqual(await client.get(18, IMAGE_TRANSFER_OBIS, 6), { type: "enum", value: 4 } as Data);
    assert.deepEqual(await client.get(1, parseObis("1.0.0.2.0.255"), 2), {
      type: "visible-string",
      value: "app 1.0.0; comms 1.0.0",
    });
    close();
    assert.match(rollbackLog(meter.eventLog()).join("\n"), /ERROR_CRC_MISMATCH/);
  } finally {
    await server.close();
  }
});
