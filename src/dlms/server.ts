import {
  type Aarq,
  CONFORMANCE,
  CONTEXT_LN,
  CONTEXT_LN_CIPHERED,
  decodeAarq,
  decodeInitiate,
  encodeAare,
  encodeInitiateResponse,
  MECHANISM_HLS_GMAC,
  MECHANISM_LLS,
  MECHANISM_NONE,
  RLRE,
} from "./acse.ts";
import { formatObis, type Obis } from "./apdu.ts";
import type { Data } from "./axdr.ts";
import { encodeData, readData } from "./axdr.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import {
  decodeGeneralGloCiphering,
  encodeGeneralGloCiphering,
  hlsGmacResponse,
  InvocationCounterGuard,
  protect,
  type SecurityContext,
  unprotect,
  verifyHlsGmac,
} from "./security.ts";

// A COSEM server: association (AARQ/AARE, no authentication for the public client, LLS for management),
// GET normal with block transfer when the result exceeds the negotiated PDU, GET next, SET and ACTION
// normal, release. The object model is injected: the meter role provides it.

/** IEC 62056-5-3 reserved client SAPs (wPorts). */
export const CLIENT_PUBLIC = 16;
export const CLIENT_MANAGEMENT = 1;
export const SERVER_MANAGEMENT_LOGICAL_DEVICE = 1;
export const SERVER_CONFORMANCE =
  CONFORMANCE.get |
  CONFORMANCE.set |
  CONFORMANCE.action |
  CONFORMANCE.selectiveAccess |
  CONFORMANCE.blockTransferWithGetOrRead;
export const SERVER_MAX_PDU = 1024;

export type AccessLevel = "public" | "management";

/** Data-access-result codes the model may answer with. */
export const ACCESS = {
  readWriteDenied: 3,
  objectUndefined: 4,
  typeUnmatched: 12,
  temporaryFailure: 2,
  otherReason: 250,
} as const;

export interface CosemObjectModel {
  get(
    level: AccessLevel,
    classId: number,
    obis: Obis,
    attributeId: number,
    selection: { selector: number; parameters: Data } | null,
  ): Data | number;
  set(level: AccessLevel, classId: number, obis: Obis, attributeId: number, value: Data): number;
  /** Returns the action-result (0 success) and optional return data. */
  action(
    level: AccessLevel,
    classId: number,
    obis: Obis,
    methodId: number,
    parameters: Data | null,
  ): { result: number; data?: Data };
}

export interface ServerCredentials {
  /** LLS password of the management client. */
  readonly lowLevelPassword: Uint8Array;
  /** HLS mechanism 5 (GMAC) with security suite 0: this server's system title and the global keys. */
  readonly hls?: SecurityContext;
  /** Challenge bytes (StoC) for HLS: the runtime passes crypto.randomBytes, tests a seeded source. */
  readonly challenge?: (length: number) => Uint8Array;
}

const HLS_STOC_BYTES = 16;
/** Ciphered request tag → the response tag of the same family (glo-get/set/action; general-glo). */
const CIPHERED_RESPONSE: Record<number, number> = { 200: 0xcc, 201: 0xcd, 203: 0xcf, 219: 0xdb };
const PLAIN_OF_CIPHERED: Record<number, number> = { 200: 0xc0, 201: 0xc1, 203: 0xc3 };

interface CipherState {
  readonly ctx: SecurityContext;
  readonly clientSystemTitle: Uint8Array;
  invocationCounter: number;
  readonly guard: InvocationCounterGuard;
  pendingHls: { stoc: Uint8Array; ctos: Uint8Array } | null;
}

export class DlmsServerSession {
  private level: AccessLevel | null = null;
  private maxPdu = SERVER_MAX_PDU;
  private pendingBlocks: { invokeId: number; data: Uint8Array; next: number } | null = null;
  private cipher: CipherState | null = null;
  requests = 0;
  refusals = 0;
  /** Ciphered APDUs refused: bad tag (wrong keys) or a replayed invocation counter. */
  securityRefusals = 0;

  constructor(
    private readonly model: CosemObjectModel,
    private readonly credentials: ServerCredentials,
    private readonly clientWPort: number,
  ) {}

  get associated(): boolean {
    return this.level !== null;
  }

  /** One request APDU in, one response APDU out (null: nothing to answer). */
  handle(request: Uint8Array): Uint8Array | null {
    this.requests++;
    const tag = request[0];
    if (tag === 0x60) return this.associate(request);
    if (tag === 0x62) {
      this.level = null;
      this.cipher = null;
      return RLRE;
    }
    if (this.cipher !== null) return this.handleCiphered(request);
    if (this.level === null) {
      this.refusals++;
      return Uint8Array.of(0xd8, 1, 2); // exception-response: service-not-allowed
    }
    return this.serve(request);
  }

  private associate(request: Uint8Array): Uint8Array {
    let aarq: Aarq;
    try {
      aarq = decodeAarq(request);
    } catch {
      this.refusals++;
      return this.refuse(1);
    }
    const base = { contextId: CONTEXT_LN, respondingApTitle: null, authenticationValue: null };
    if (aarq.mechanism === MECHANISM_HLS_GMAC) return this.associateHls(aarq);
    if (aarq.contextId !== CONTEXT_LN) {
      this.refusals++;
      return encodeAare({
        ...base,
        result: 1,
        diagnostic: 2,
        mechanism: MECHANISM_NONE,
        conformance: 0,
        maxPduSize: 0,
      });
    }
    if (this.clientWPort === CLIENT_MANAGEMENT) {
      if (aarq.mechanism !== MECHANISM_LLS) {
        this.refusals++;
        return encodeAare({
          ...base,
          result: 1,
          diagnostic: 14,
          mechanism: MECHANISM_LLS,
          conformance: 0,
          maxPduSize: 0,
        });
      }
      if (
        aarq.authenticationValue === null ||
        !Buffer.from(aarq.authenticationValue).equals(Buffer.from(this.credentials.lowLevelPassword))
      ) {
        this.refusals++;
        return encodeAare({
          ...base,
          result: 1,
          diagnostic: 13,
          mechanism: MECHANISM_LLS,
          conformance: 0,
          maxPduSize: 0,
        });
      }
      this.level = "management";
    } else if (this.clientWPort === CLIENT_PUBLIC && aarq.mechanism === MECHANISM_NONE) {
      this.level = "public";
    } else {
      this.refusals++;
      return encodeAare({
        ...base,
        result: 1,
        diagnostic: 1,
        mechanism: aarq.mechanism,
        conformance: 0,
        maxPduSize: 0,
      });
    }
    // IEC 62056-5-3: the server never sends a PDU larger than the client's max receive size.
    this.maxPdu = Math.max(
      64,
      Math.min(SERVER_MAX_PDU, aarq.maxPduSize === 0 ? SERVER_MAX_PDU : aarq.maxPduSize),
    );
    return encodeAare({
      ...base,
      result: 0,
      diagnostic: 0,
      mechanism: aarq.mechanism,
      conformance: SERVER_CONFORMANCE & aarq.conformance,
      maxPduSize: this.maxPdu,
    });
  }

  /** HLS mechanism 5: the AARQ carries CtoS and a ciphered initiate; the AARE returns StoC; pass 3/4 follow. */
  private associateHls(aarq: Aarq): Uint8Array {
    const hls = this.credentials.hls;
    const reject = (diagnostic: number) => {
      this.refusals++;
      return encodeAare({
        contextId: CONTEXT_LN_CIPHERED,
        result: 1,
        diagnostic,
        respondingApTitle: null,
        mechanism: MECHANISM_HLS_GMAC,
        authenticationValue: null,
        conformance: 0,
        maxPduSize: 0,
      });
    };
    if (hls === undefined || this.clientWPort !== CLIENT_MANAGEMENT) return reject(11);
    if (
      aarq.contextId !== CONTEXT_LN_CIPHERED ||
      aarq.callingApTitle === null ||
      aarq.callingApTitle.length !== 8
    )
      return reject(2);
    const ctos = aarq.authenticationValue;
    if (
      ctos === null ||
      ctos.length < 8 ||
      ctos.length > 64 ||
      aarq.cipheredInitiate === null ||
      aarq.cipheredInitiate === undefined
    )
      return reject(13);
    const guard = new InvocationCounterGuard();
    let initiate: { conformance: number; maxPduSize: number };
    try {
      const opened = unprotect(hls, aarq.callingApTitle, aarq.cipheredInitiate);
      guard.accept(aarq.callingApTitle, opened.invocationCounter);
      initiate = decodeInitiate(opened.plaintext, false);
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.securityRefusals++;
      return reject(13);
    }
    const stoc = (this.credentials.challenge ?? ((n: number) => new Uint8Array(n).fill(0x5a)))(
      HLS_STOC_BYTES,
    );
    this.maxPdu = Math.max(
      64,
      Math.min(SERVER_MAX_PDU, initiate.maxPduSize === 0 ? SERVER_MAX_PDU : initiate.maxPduSize),
    );
    this.cipher = {
      ctx: hls,
      clientSystemTitle: aarq.callingApTitle,
      invocationCounter: 1,
      guard,
      pendingHls: { stoc, ctos },
    };
    const response = encodeInitiateResponse(SERVER_CONFORMANCE & initiate.conformance, this.maxPdu);
    return encodeAare({
      contextId: CONTEXT_LN_CIPHERED,
      result: 0,
      diagnostic: 0,
      respondingApTitle: hls.systemTitle,
      mechanism: MECHANISM_HLS_GMAC,
      authenticationValue: stoc,
      conformance: 0,
      maxPduSize: 0,
      cipheredInitiate: protect(hls, 0x30, this.cipher.invocationCounter++, response),
    });
  }

  private handleCiphered(request: Uint8Array): Uint8Array {
    const cipher = this.cipher!;
    const tag = request[0]!;
    const responseTag = CIPHERED_RESPONSE[tag];
    if (responseTag === undefined) {
      this.refusals++;
      return Uint8Array.of(0xd8, 1, 2); // a plain APDU on a ciphered association
    }
    let plain: Uint8Array;
    try {
      let content: Uint8Array;
      if (tag === 0xdb) {
        const g = decodeGeneralGloCiphering(request);
        if (!Buffer.from(g.systemTitle).equals(Buffer.from(cipher.clientSystemTitle)))
          throw new DlmsError("DECRYPT_FAILED", "foreign system title");
        content = g.content;
      } else {
        const r = new DlmsReader(request);
        r.u8("tag");
        content = r.bytes(r.length("ciphered content"), "ciphered content");
      }
      const opened = unprotect(cipher.ctx, cipher.clientSystemTitle, content);
      cipher.guard.accept(cipher.clientSystemTitle, opened.invocationCounter);
      plain = opened.plaintext;
      if (tag !== 0xdb && plain[0] !== PLAIN_OF_CIPHERED[tag])
        throw new DlmsError("BAD_TAG", "ciphered service does not match its glo tag");
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.securityRefusals++;
      return Uint8Array.of(0xd8, 1, 3);
    }
    let answer: Uint8Array;
    if (cipher.pendingHls !== null) answer = this.hlsPass3(plain, cipher);
    else if (this.level === null) answer = Uint8Array.of(0xd8, 1, 2);
    else answer = this.serve(plain);
    const content = protect(cipher.ctx, 0x30, cipher.invocationCounter++, answer);
    return tag === 0xdb
      ? encodeGeneralGloCiphering(cipher.ctx.systemTitle, content)
      : Uint8Array.of(responseTag, ...encodeLength(content.length), ...content);
  }

  /** Pass 3/4: ACTION reply_to_HLS_authentication on the association object carries f(StoC). */
  private hlsPass3(plain: Uint8Array, cipher: CipherState): Uint8Array {
    const pending = cipher.pendingHls!;
    const r = new DlmsReader(plain);
    try {
      if (r.u8("tag") !== 0xc3 || r.u8("type") !== 1) return Uint8Array.of(0xd8, 1, 2);
      const invokeId = r.u8("invoke id");
      const classId = r.u16("class id");
      const obis = formatObis(r.bytes(6, "obis"));
      const method = r.u8("method");
      const parameters = r.u8("parameters flag") ? readData(r, 0) : null;
      if (
        classId !== 15 ||
        obis !== "0.0.40.0.0.255" ||
        method !== 1 ||
        parameters?.type !== "octet-string"
      ) {
        return Uint8Array.of(0xc7, 1, invokeId, ACCESS.readWriteDenied, 0);
      }
      try {
        verifyHlsGmac(cipher.ctx, cipher.clientSystemTitle, pending.stoc, parameters.value);
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
        this.securityRefusals++;
        cipher.pendingHls = null;
        this.cipher = null; // authentication failed: the association is gone
        return Uint8Array.of(0xc7, 1, invokeId, ACCESS.readWriteDenied, 0);
      }
      cipher.pendingHls = null;
      this.level = "management";
      const fCtoS = hlsGmacResponse(cipher.ctx, cipher.invocationCounter++, pending.ctos);
      return Uint8Array.of(0xc7, 1, invokeId, 0, 1, 0, ...encodeData({ type: "octet-string", value: fCtoS }));
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      return Uint8Array.of(0xd8, 1, 3);
    }
  }

  private serve(request: Uint8Array): Uint8Array {
    try {
      switch (request[0]) {
        case 0xc0:
          return this.get(request);
        case 0xc1:
          return this.set(request);
        case 0xc3:
          return this.action(request);
        default:
          return Uint8Array.of(0xd8, 1, 2);
      }
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.refusals++;
      return Uint8Array.of(0xd8, 1, 3);
    }
  }

  private refuse(diagnostic: number): Uint8Array {
    return encodeAare({
      contextId: CONTEXT_LN,
      result: 1,
      diagnostic,
      respondingApTitle: null,
      mechanism: MECHANISM_NONE,
      authenticationValue: null,
      conformance: 0,
      maxPduSize: 0,
    });
  }

  private get(request: Uint8Array): Uint8Array {
    const r = new DlmsReader(request);
    r.u8("tag");
    const type = r.u8("get type");
    const invokeId = r.u8("invoke id");
    if (type === 2) {
      const block = r.u32("block number");
      const pending = this.pendingBlocks;
      if (pending === null || pending.invokeId !== invokeId || block !== pending.next - 1) {
        this.pendingBlocks = null;
        return Uint8Array.of(0xc4, 1, invokeId, 1, 16); // no-long-get-in-progress
      }
      return this.nextBlock(pending);
    }
    if (type !== 1) return Uint8Array.of(0xd8, 1, 2);
    const classId = r.u16("class id");
    const obis = Array.from(r.bytes(6, "obis")) as unknown as Obis;
    const attributeId = r.u8("attribute id");
    const selection = r.u8("access selection flag")
      ? { selector: r.u8("selector"), parameters: readData(r, 0) }
      : null;
    const answer = this.model.get(this.level!, classId, obis, attributeId, selection);
    if (typeof answer === "number") return Uint8Array.of(0xc4, 1, invokeId, 1, answer);
    const data = encodeData(answer);
    if (data.length + 4 <= this.maxPdu) return Uint8Array.of(0xc4, 1, invokeId, 0, ...data);
    this.pendingBlocks = { invokeId, data, next: 1 };
    return this.nextBlock(this.pendingBlocks);
  }

  /** get-response-with-datablock: last-block, block-number, raw-data (octet-string). */
  private nextBlock(pending: { invokeId: number; data: Uint8Array; next: number }): Uint8Array {
    const chunk = this.maxPdu - 16;
    const start = (pending.next - 1) * chunk;
    const part = pending.data.subarray(start, start + chunk);
    const last = start + chunk >= pending.data.length;
    const block = pending.next;
    pending.next++;
    if (last) this.pendingBlocks = null;
    return Uint8Array.of(
      0xc4,
      2,
      pending.invokeId,
      last ? 1 : 0,
      (block >>> 24) & 0xff,
      (block >>> 16) & 0xff,
      (block >>> 8) & 0xff,
      block & 0xff,
      0,
      ...encodeLength(part.length),
      ...part,
    );
  }

  private set(request: Uint8Array): Uint8Array {
    const r = new DlmsReader(request);
    r.u8("tag");
    if (r.u8("set type") !== 1) return Uint8Array.of(0xd8, 1, 2);
    const invokeId = r.u8("invoke id");
    const classId = r.u16("class id");
    const obis = Array.from(r.bytes(6, "obis")) as unknown as Obis;
    const attributeId = r.u8("attribute id");
    if (r.u8("access selection flag") !== 0) return Uint8Array.of(0xc5, 1, invokeId, ACCESS.otherReason);
    const value = readData(r, 0);
    return Uint8Array.of(0xc5, 1, invokeId, this.model.set(this.level!, classId, obis, attributeId, value));
  }

  private action(request: Uint8Array): Uint8Array {
    const r = new DlmsReader(request);
    r.u8("tag");
    if (r.u8("action type") !== 1) return Uint8Array.of(0xd8, 1, 2);
    const invokeId = r.u8("invoke id");
    const classId = r.u16("class id");
    const obis = Array.from(r.bytes(6, "obis")) as unknown as Obis;
    const methodId = r.u8("method id");
    const parameters = r.u8("parameters flag") ? readData(r, 0) : null;
    const { result, data } = this.model.action(this.level!, classId, obis, methodId, parameters);
    return data === undefined
      ? Uint8Array.of(0xc7, 1, invokeId, result, 0)
      : Uint8Array.of(0xc7, 1, invokeId, result, 1, 0, ...encodeData(data));
  }
}

export function describeTarget(classId: number, obis: Obis, id: number): string {
  return `class ${classId} ${formatObis(obis)} #${id}`;
}
