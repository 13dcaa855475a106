import {
  AtomicRingLog,
  type EventRecord,
  MemoryNvm,
  MemorySecureElement,
  type NvmDevice,
  SeededRandom,
} from "../../src/evidence/index.ts";
import {
  buildFirmwareImage,
  type FirmwareComponent,
  type FirmwareImage,
  FirmwareManager,
  generateTestPki,
  issueFirmwareSigner,
  meterNvmLayout,
  signerFromPem,
  type TestPki,
} from "../../src/meter/index.ts";

export const HW = "AMI-1PH-v2";
export const NOW = Date.UTC(2026, 5, 1);
export const layout = meterNvmLayout();
export const pki: TestPki = await generateTestPki({
  notBefore: new Date("2025-01-01"),
  notAfter: new Date("2030-01-01"),
});
/** Same CA, but a firmware-signing certificate that expired before the meter's clock (2026-06-01). */
export const expiredPki: TestPki = {
  ca: pki.ca,
  firmwareSigner: await issueFirmwareSigner(pki.ca, new Date("2025-01-01"), new Date("2026-01-01")),
};

export function image(
  component: FirmwareComponent,
  version: number,
  options: { signer?: TestPki; hwTarget?: string; expiresMs?: number; size?: number } = {},
): FirmwareImage {
  const signer = options.signer ?? pki;
  const payload = new Uint8Array(options.size ?? 3000).map((_, i) => (i * 31 + version) & 0xff);
  return buildFirmwareImage(
    { component, version, hwTarget: options.hwTarget ?? HW, expiresMs: options.expiresMs ?? 0 },
    payload,
    signer.firmwareSigner.certificateDer,
    signerFromPem(signer.firmwareSigner.privateKeyPem),
  );
}

export const GOLDEN_APP = image("app", 1_000_000);
export const GOLDEN_COMMS = image("comms", 1_000_000);

export interface Rig {
  nvm: MemoryNvm;
  se: MemorySecureElement;
  log: AtomicRingLog;
  fw: FirmwareManager;
}

export function attach(nvm: NvmDevice & MemoryNvm, se: MemorySecureElement, trust = pki): Rig {
  const log = AtomicRingLog.open({
    nvm,
    region: layout.eventLog,
    meterId: "MTR-FW",
    secureElement: se,
    nowMs: NOW,
    timeQuality: "SYNCED",
  });
  const fw = new FirmwareManager({
    nvm,
    layout,
    secureElement: se,
    trust: { caCertificateDer: trust.ca.certificateDer },
    hwTarget: HW,
    nowMs: () => NOW,
    seal: (type, level, snapshot) =>
      log.append({ type, level, timestampMs: NOW, timeQuality: "SYNCED", snapshot }),
  });
  return { nvm, se, log, fw };
}

export function factoryRig(seed = 1, trust = pki): Rig {
  const nvm = new MemoryNvm(layout.geometry, { rng: new SeededRandom(seed) });
  const se = new MemorySecureElement("MTR-FW", Uint8Array.of(seed));
  const rig = attach(nvm, se, trust);
  rig.fw.provision(GOLDEN_APP, GOLDEN_COMMS);
  rig.fw.boot();
  return rig;
}

/** IC 18 style: initiate, blocks, verify, activate. */
export function transfer(rig: Rig, img: FirmwareImage, blockBytes = 512): void {
  rig.fw.initiateTransfer(img.component, img.bytes.length, blockBytes);
  for (let n = rig.fw.firstNotTransferredBlock(); n * blockBytes < img.bytes.length; n++) {
    rig.fw.receiveBlock(
      n,
      img.bytes.subarray(n * blockBytes, Math.min((n + 1) * blockBytes, img.bytes.length)),
    );
  }
  rig.fw.verify();
  rig.fw.activate();
}

export function types(records: readonly EventRecord[]): string[] {
  return records.map((r) => r.type);
}

export function billingBytes(nvm: MemoryNvm): Uint8Array {
  return nvm.read(layout.billing.offset, layout.billing.length);
}
