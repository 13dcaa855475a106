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
  issueEndEntity,
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
/** Same CA, a signer valid until 2027-01-01: fine at NOW, expired once the meter's clock passes 2027. */
export const shortPki: TestPki = {
  ca: pki.ca,
  firmwareSigner: await issueFirmwareSigner(pki.ca, new Date("2025-01-01"), new Date("2027-01-01"), "04"),
};
/** Same CA, but a device (clientAuth) certificate: may not sign firmware. */
export const deviceCertPki: TestPki = {
  ca: pki.ca,
  firmwareSigner: await issueEndEntity(pki.ca, {
    subject: "CN=MTR-FW meter",
    notBefore: new Date("2025-01-01"),
    notAfter: new Date("2030-01-01"),
    serialNumber: "05",
    purpose: "device",
  }),
};
/** Another CA altogether. */
export const otherPki: TestPki = await generateTestPki({
  notBefore: new Date("2025-01-01"),
  notAfter: new Date("2030-01-01"),
  caName: "someone else's CA",
});

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

/** The meter's clock, shared across resets of one rig. */
export interface Clock {
  nowMs: number;
}

export interface Rig {
  nvm: MemoryNvm;
  se: MemorySecureElement;
  log: AtomicRingLog;
  fw: FirmwareManager;
  clock: Clock;
}

/** A reset: the log and the manager come back from NVM alone (nothing survives in RAM). */
export function attach(
  nvm: NvmDevice & MemoryNvm,
  se: MemorySecureElement,
  trust = pki,
  clock: Clock = { nowMs: NOW },
): Rig {
  const log = AtomicRingLog.open({
    nvm,
    region: layout.eventLog,
    meterId: "MTR-FW",
    secureElement: se,
    nowMs: clock.nowMs,
    timeQuality: "SYNCED",
  });
  const fw = new FirmwareManager({
    nvm,
    layout,
    secureElement: se,
    trust: { caCertificateDer: trust.ca.certificateDer },
    hwTarget: HW,
    nowMs: () => clock.nowMs,
    records: () => log.records(),
    seal: (type, level, snapshot) =>
      log.append({ type, level, timestampMs: clock.nowMs, timeQuality: "SYNCED", snapshot }),
  });
  return { nvm, se, log, fw, clock };
}

/** Power returns after a cut (or a plain reset): a fresh manager over the same NVM and secure element. */
export function reset(rig: Rig): Rig {
  rig.nvm.disarmPowerCut();
  rig.nvm.powerOn();
  return attach(rig.nvm, rig.se, pki, rig.clock);
}

export function factoryRig(
  seed = 1,
  options: { trust?: TestPki; goldenApp?: FirmwareImage; goldenComms?: FirmwareImage } = {},
): Rig {
  const nvm = new MemoryNvm(layout.geometry, { rng: new SeededRandom(seed) });
  const se = new MemorySecureElement("MTR-FW", Uint8Array.of(seed));
  const rig = attach(nvm, se, options.trust ?? pki);
  rig.fw.provision(options.goldenApp ?? GOLDEN_APP, options.goldenComms ?? GOLDEN_COMMS);
  rig.fw.boot();
  return rig;
}

/** Records tied to firmware transitions, by `fw_transition`. */
export function transitionsOf(records: readonly EventRecord[]): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const r of records) {
    const seq = r.snapshot.fw_transition;
    if (typeof seq !== "number") continue;
    out.set(seq, [...(out.get(seq) ?? []), r.type]);
  }
  return out;
}

/**
 * Evidence for every transition: transitions 1..N of the boot configuration each have their records,
 * none twice, none beyond N.
 */
export function assertEvidenceComplete(rig: Rig, what: string): void {
  const last = rig.fw.bootConfig()?.last?.seq ?? 0;
  const byTransition = transitionsOf(rig.log.records());
  for (let seq = 1; seq <= last; seq++) {
    const types = byTransition.get(seq);
    if (types === undefined) throw new Error(`${what}: transition ${seq} of ${last} has no record`);
    if (new Set(types).size !== types.length)
      throw new Error(`${what}: transition ${seq} sealed twice: ${types.join(", ")}`);
  }
  for (const seq of byTransition.keys()) {
    if (seq > last)
      throw new Error(`${what}: record of transition ${seq} beyond the configuration's ${last}`);
  }
}

/** IC 18 style: initiate (resuming a staged transfer of the same image), blocks, verify, activate. */
export function transfer(rig: Rig, img: FirmwareImage, blockBytes = 512): void {
  rig.fw.initiateTransfer(img.component, img.bytes.length, blockBytes, identifierOf(img));
  for (let n = rig.fw.firstNotTransferredBlock(); n * blockBytes < img.bytes.length; n++) {
    rig.fw.receiveBlock(
      n,
      img.bytes.subarray(n * blockBytes, Math.min((n + 1) * blockBytes, img.bytes.length)),
    );
  }
  rig.fw.verify();
  rig.fw.activate();
}

export function identifierOf(img: FirmwareImage): string {
  return `${img.component} ${img.version}`;
}

export function types(records: readonly EventRecord[]): string[] {
  return records.map((r) => r.type);
}

export function billingBytes(nvm: MemoryNvm): Uint8Array {
  return nvm.read(layout.billing.offset, layout.billing.length);
}
