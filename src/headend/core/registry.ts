import { fromHex, P256_PUBLIC_KEY_BYTES, toHex } from "../../evidence/index.ts";
import { HeadendError } from "../errors.ts";
import type { HeadendStore } from "../store/index.ts";

// The head-end's key registry (seed 003 H2-6 key custody seen from the receiving side): which
// concentrator signs batches with which batch_sign key, which meter seals events with which event_seal
// key. Keys are provisioned, never learned from the traffic they authenticate: an asset register file
// or the admin API. Concentrator keys live in the store (concentrators table); meter keys live in the
// registry's own persisted asset register, handed in as a port.

export const ASSET_REGISTER_FORMAT = "amiproof-asset-register";
export const ASSET_REGISTER_VERSION = 1;
export const ASSET_REGISTER_BYTES_MAX = 64 * 1024 * 1024;
/** Meters one registry holds (the seed-004 scale target is "millions of endpoints" across head-ends). */
export const REGISTRY_METERS_MAX = 2_000_000;
export const REGISTRY_CONCENTRATORS_MAX = 100_000;
const ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

export interface ConcentratorAsset {
  readonly dcuId: string;
  readonly batchSignPublicKey: Uint8Array;
}

export interface MeterAsset {
  readonly meterId: string;
  readonly eventSealPublicKey: Uint8Array;
  readonly dcuId?: string | null;
  readonly transformerId?: string | null;
  readonly model?: string | null;
  readonly group?: string | null;
}

export interface AssetRegister {
  readonly concentrators: readonly ConcentratorAsset[];
  readonly meters: readonly MeterAsset[];
}

export function encodeAssetRegister(register: AssetRegister): string {
  return `${JSON.stringify(
    {
      format: ASSET_REGISTER_FORMAT,
      version: ASSET_REGISTER_VERSION,
      concentrators: register.concentrators.map((c) => ({
        dcu_id: c.dcuId,
        batch_sign_public_key: toHex(c.batchSignPublicKey),
      })),
      meters: register.meters.map((m) => ({
        meter_id: m.meterId,
        event_seal_public_key: toHex(m.eventSealPublicKey),
        ...(m.dcuId == null ? {} : { dcu_id: m.dcuId }),
        ...(m.transformerId == null ? {} : { transformer_id: m.transformerId }),
        ...(m.model == null ? {} : { model: m.model }),
        ...(m.group == null ? {} : { group: m.group }),
      })),
    },
    null,
    1,
  )}\n`;
}

export function decodeAssetRegister(text: string): AssetRegister {
  if (text.length > ASSET_REGISTER_BYTES_MAX) {
    throw bad(`${text.length} characters, at most ${ASSET_REGISTER_BYTES_MAX}`, "asset register");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw bad(`not JSON: ${(error as Error).message}`, "asset register");
  }
  const top = object(json, "asset register");
  if (top.format !== ASSET_REGISTER_FORMAT) {
    throw bad(
      `format must be "${ASSET_REGISTER_FORMAT}", got ${JSON.stringify(top.format)}`,
      "asset register",
    );
  }
  if (top.version !== ASSET_REGISTER_VERSION) {
    throw bad(
      `version must be ${ASSET_REGISTER_VERSION}, got ${JSON.stringify(top.version)}`,
      "asset register",
    );
  }
  const concentrators = list(top.concentrators, "concentrators", REGISTRY_CONCENTRATORS_MAX).map((item, i) =>
    decodeConcentratorAsset(item, `concentrators[${i}]`),
  );
  const meters = list(top.meters, "meters", REGISTRY_METERS_MAX).map((item, i) =>
    decodeMeterAsset(item, `meters[${i}]`),
  );
  return { concentrators, meters };
}

/** One concentrator as the admin API and the register spell it: { dcu_id, batch_sign_public_key }. */
export function decodeConcentratorAsset(value: unknown, where: string): ConcentratorAsset {
  const o = object(value, where);
  return {
    dcuId: id(o.dcu_id, `${where}.dcu_id`),
    batchSignPublicKey: publicKey(o.batch_sign_public_key ?? o.public_key, `${where}.batch_sign_public_key`),
  };
}

/** One meter: { meter_id, event_seal_public_key, dcu_id?, transformer_id?, model?, group? }. */
export function decodeMeterAsset(value: unknown, where: string): MeterAsset {
  const o = object(value, where);
  return {
    meterId: id(o.meter_id, `${where}.meter_id`),
    eventSealPublicKey: publicKey(o.event_seal_public_key ?? o.public_key, `${where}.event_seal_public_key`),
    dcuId: optionalText(o.dcu_id, `${where}.dcu_id`),
    transformerId: optionalText(o.transformer_id, `${where}.transformer_id`),
    model: optionalText(o.model, `${where}.model`),
    group: optionalText(o.group, `${where}.group`),
  };
}

/** Where the registry keeps its meter keys between runs (a file in the data directory, or memory). */
export interface RegistryPersistence {
  load(): AssetRegister | null;
  save(register: AssetRegister): void;
}

export const MEMORY_PERSISTENCE: RegistryPersistence = { load: () => null, save: () => {} };

export class KeyRegistry {
  private readonly meters = new Map<string, MeterAsset>();
  private readonly concentratorKeys = new Map<string, Uint8Array>();

  constructor(
    private readonly store: HeadendStore,
    private readonly persistence: RegistryPersistence = MEMORY_PERSISTENCE,
  ) {
    const saved = persistence.load();
    if (saved !== null) for (const m of saved.meters) this.meters.set(m.meterId, m);
  }

  /** The batch_sign key of a concentrator, or null when it was never provisioned. */
  async concentratorKey(dcuId: string): Promise<Uint8Array | null> {
    const cached = this.concentratorKeys.get(dcuId);
    if (cached !== undefined) return cached;
    const row = await this.store.getConcentrator(dcuId);
    if (row === null) return null;
    if (this.concentratorKeys.size >= REGISTRY_CONCENTRATORS_MAX) this.concentratorKeys.clear();
    this.concentratorKeys.set(dcuId, row.publicKey);
    return row.publicKey;
  }

  meterKey(meterId: string): Uint8Array | null {
    return this.meters.get(meterId)?.eventSealPublicKey ?? null;
  }

  meter(meterId: string): MeterAsset | null {
    return this.meters.get(meterId) ?? null;
  }

  get meterCount(): number {
    return this.meters.size;
  }

  async registerConcentrator(asset: ConcentratorAsset, nowMs: number): Promise<void> {
    await this.store.putConcentrator(asset.dcuId, asset.batchSignPublicKey, nowMs);
    this.concentratorKeys.set(asset.dcuId, asset.batchSignPublicKey);
  }

  /** Provisions meters: keys into the persisted register, inventory fields into the store's meters table. */
  async registerMeters(assets: readonly MeterAsset[], nowMs: number): Promise<void> {
    if (this.meters.size + assets.length > REGISTRY_METERS_MAX) {
      const fresh = assets.filter((a) => !this.meters.has(a.meterId)).length;
      if (this.meters.size + fresh > REGISTRY_METERS_MAX) {
        throw new HeadendError("BAD_ASSET_REGISTER", `more than ${REGISTRY_METERS_MAX} meters`, "registry");
      }
    }
    for (const a of assets) this.meters.set(a.meterId, a);
    this.persistence.save(this.snapshot([]));
    for (const a of assets) {
      await this.store.upsertMeter({
        meterId: a.meterId,
        ...(a.dcuId == null ? {} : { dcuId: a.dcuId }),
        ...(a.transformerId == null ? {} : { transformerId: a.transformerId }),
        ...(a.model == null ? {} : { model: a.model }),
        ...(a.group == null ? {} : { group: a.group }),
        updatedMs: nowMs,
      });
    }
  }

  async load(register: AssetRegister, nowMs: number): Promise<void> {
    for (const c of register.concentrators) await this.registerConcentrator(c, nowMs);
    await this.registerMeters(register.meters, nowMs);
  }

  private snapshot(concentrators: readonly ConcentratorAsset[]): AssetRegister {
    return { concentrators, meters: [...this.meters.values()] };
  }
}

function bad(message: string, where: string): HeadendError {
  return new HeadendError("BAD_ASSET_REGISTER", message, where);
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad("expected a JSON object", where);
  return value as Record<string, unknown>;
}

function list(value: unknown, where: string, max: number): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw bad("expected an array", where);
  if (value.length > max) throw bad(`${value.length} entries, at most ${max}`, where);
  return value;
}

function id(value: unknown, where: string): string {
  if (typeof value !== "string" || !ID_PATTERN.test(value)) {
    throw bad(`expected 1..64 of [A-Za-z0-9._:-], got ${JSON.stringify(value)}`, where);
  }
  return value;
}

function optionalText(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || value.length === 0 || value.length > 128) {
    throw bad("expected a string of 1..128 characters", where);
  }
  return value;
}

function publicKey(value: unknown, where: string): Uint8Array {
  if (typeof value !== "string") throw bad("expected a hex P-256 public key", where);
  let key: Uint8Array;
  try {
    key = fromHex(value, where);
  } catch (error) {
    throw bad((error as Error).message, where);
  }
  if (key.length !== P256_PUBLIC_KEY_BYTES || key[0] !== 0x04) {
    throw bad(
      `expected an uncompressed P-256 key of ${P256_PUBLIC_KEY_BYTES} bytes, got ${key.length}`,
      where,
    );
  }
  return key;
}
