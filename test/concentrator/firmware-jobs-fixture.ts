// shell (test fixture, run as its own process): concentrators' firmware links and the DLMS meters behind
// them, for the multi-process campaign test (firmware-jobs-process.test.ts). Prints one JSON line
// { ready: true } once every link is subscribed; on SIGTERM prints each meter's running application
// checksum and whether its billing registers are unchanged, then exits 0.
//   node --import tsx firmware-jobs-fixture.ts MQTT_URL OTP_KEY_FILE IMAGES_DIR METERS DCUS WDT_METER DIR
// DIR holds ca.der, golden-app.afw and golden-comms.afw: the test process's PKI (each process that imports
// the firmware harness generates its own).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startFirmwareLink } from "../../src/concentrator/index.ts";
import { listenDlms } from "../../src/dlms/index.ts";
import { MemorySecureElement, toHex } from "../../src/evidence/index.ts";
import { deriveMeterOtpKey } from "../../src/headend/index.ts";
import {
  decodeFirmwareImage,
  type FirmwareManager,
  Meter,
  meterObjectModel,
  RollbackCommandHandler,
  withRollbackCommand,
} from "../../src/meter/index.ts";

const [mqttUrl, otpKeyFile, imagesDir, metersArg, dcusArg, wdtMeter, pkiDir] = process.argv.slice(2);
const caCertificateDer = new Uint8Array(readFileSync(join(pkiDir!, "ca.der")));
const goldenApp = decodeFirmwareImage(new Uint8Array(readFileSync(join(pkiDir!, "golden-app.afw"))));
const goldenComms = decodeFirmwareImage(new Uint8Array(readFileSync(join(pkiDir!, "golden-comms.afw"))));
const PASSWORD = new TextEncoder().encode("12345678");
const master = new Uint8Array(Buffer.from(readFileSync(otpKeyFile!, "utf8").trim(), "hex"));

/** The faulty application never kicks its watchdog: each boot into it ends in a watchdog reset. */
function neverKicks(firmware: FirmwareManager): FirmwareManager {
  return new Proxy(firmware, {
    get(target, prop, receiver) {
      if (prop === "confirm") {
        return () => {
          for (let resets = 0; resets < 10 && target.boot("watchdog").app.trial; resets++);
          return false;
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

const meters = new Map<string, { meter: Meter; firmware: FirmwareManager; port: number; dcuId: string }>();
const closers: (() => Promise<void>)[] = [];
for (let i = 1; i <= Number(metersArg); i++) {
  const id = `MTR-P${String(i).padStart(2, "0")}`;
  const se = new MemorySecureElement(id, Uint8Array.of(i, 91));
  const meter = Meter.open({ id, secureElement: se, factoryTimeMs: Date.now() - 1000 }, Date.now());
  meter.step(Date.now(), { vRms: 230, i1Rms: 3 + i, phiDeg: 5, frequencyHz: 50, harmonics: [] });
  const firmware = meter.attachFirmware({ caCertificateDer }, goldenApp.hwTarget, () => Date.now());
  firmware.provision(goldenApp, goldenComms);
  firmware.boot();
  const handler = new RollbackCommandHandler({
    meterId: id,
    otpKey: deriveMeterOtpKey(master, id),
    firmware,
    secureElement: se,
    nowMs: () => Date.now(),
    sealRefusal: (_r, snapshot) => meter.reportFirmwareIncident(Date.now(), "SIG_FAIL", snapshot),
  });
  const served = id === wdtMeter ? neverKicks(firmware) : firmware;
  const server = await listenDlms(
    0,
    withRollbackCommand(meterObjectModel({ meter, firmware: served, trueNowMs: () => Date.now() }), handler),
    { lowLevelPassword: PASSWORD },
  );
  closers.push(() => server.close());
  meters.set(id, { meter, firmware, port: server.port, dcuId: `DCU-P${(i % Number(dcusArg)) + 1}` });
}
const billing = new Map([...meters].map(([id, m]) => [id, JSON.stringify(m.meter.registers)]));
for (let d = 1; d <= Number(dcusArg); d++) {
  const dcuId = `DCU-P${d}`;
  const link = await startFirmwareLink({
    dcuId,
    mqttUrl: mqttUrl!,
    imagesDir: join(imagesDir!, dcuId),
    concurrency: 2,
    tickMs: 100,
    endpoint: (meterId) => {
      const m = meters.get(meterId);
      return m === undefined || m.dcuId !== dcuId
        ? undefined
        : { host: "127.0.0.1", port: m.port, password: PASSWORD };
    },
  });
  closers.unshift(() => link.close());
}
process.stdout.write(
  `${JSON.stringify({ ready: true, meters: [...meters].map(([meter_id, m]) => ({ meter_id, dcu_id: m.dcuId })) })}\n`,
);
process.once("SIGTERM", async () => {
  for (const close of closers) await close();
  const summary = Object.fromEntries(
    [...meters].map(([id, m]) => [
      id,
      {
        app_checksum: toHex(m.firmware.runningChecksum("app") ?? new Uint8Array(0)),
        registers_unchanged: JSON.stringify(m.meter.registers) === billing.get(id),
      },
    ]),
  );
  process.stdout.write(`${JSON.stringify({ summary })}\n`);
  process.exit(0);
});
