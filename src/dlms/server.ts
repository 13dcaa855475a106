import type { KeyObject } from "node:crypto";
import {
  type Aarq,
  CONFORMANCE,
  CONTEXT_LN,
  CONTEXT_LN_CIPHERED,
  decodeAarq,
  decodeInitiate,
  encodeAare,
  encodeInitiateResponse,
  MECHANISM_HLS_ECDSA,
  MECHANISM_HLS_GMAC,
  MECHANISM_LLS,
  MECHANISM_NONE,
  RLRE,
} from "./acse.ts";
import {
  type AttributeDescriptor,
  decodeApdu,
  encodeApdu,
  encodeGetResultList,
  formatObis,
  type GetDataResult,
  type Obis,
} from "./apdu.ts";
import type { Data } from "./axdr.ts";
import { decodeData, encodeData, readData } from "./axdr.ts";
import { CIPHERED_OVERHEAD_BYTES } from "./ciphering.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import { cipherContext, type DlmsKeySet, peerSigningKey } from "./keys.ts";
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
import {
  HLS_ECDSA_CHALLENGE_BYTES_MAX,
  HLS_ECDSA_CHALLENGE_BYTES_MIN,
  hlsEcdsaResponse,
  verifyHlsEcdsa,
} from "./suite1.ts";

// A COSEM server: association (AARQ/AARE, no authentication for the public client, LLS or HLS-GMAC for
// management), GET normal / next / with-list with block transfer when a result exceeds the negotiated
// PDU, SET normal and with datablocks, ACTION normal, release; every refused request is answered with
// the Green Book's exception-response or data-access-result code. The object model is injected: the
// meter role provides it.

/** IEC 62056-5-3 reserved client SAPs (wPorts). */
export const CLIENT_PUBLIC = 16;
export const CLIENT_MANAGEMENT = 1;
export const SERVER_MANAGEMENT_LOGICAL_DEVICE = 1;
export const SERVER_CONFORMANCE =
  CONFORMANCE.get |
  CONFORMANCE.set |
  CONFORMANCE.action |
  CONFORMANCE.selectiveAccess |
  CONFORMANCE.multipleReferences |
  CONFORMANCE.blockTransferWithGetOrRead |
  CONFORMANCE.blockTransferWithSetOrWrite;
export const SERVER_MAX_PDU = 1024;
/** Bound on a value written with SET datablocks (the meter's largest writable attribute is far below). */
export const SET_BLOCK_BYTES_MAX = 65_536;

/** ExceptionResponse (Green Book §9.5): state-error and service-error values the server sends. */
export const EXCEPTION_STATE = { serviceNotAllowed: 1, serviceUnknown: 2 } as const;
export const EXCEPTION_SERVICE = {
  operationNotPossible: 1,
  serviceNotSupported: 2,
  otherReason: 3,
  pduTooLong: 4,
  decipheringError: 5,
  invocationCounterError: 6,
} as const;

function exception(stateError: number, serviceError: number, invocationCounter?: number): Uint8Array {
  return encodeApdu(
    invocationCounter === undefined
      ? { kind: "exception-response", stateError, serviceError }
      : { kind: "exception-response", stateError, serviceError, invocationCounter },
  );
}

export type AccessLevel = "public" | "management";

/** Data-access-result codes the model may answer with. */
export const ACCESS = {
  readWriteDenied: 3,
  objectUndefined: 4,
  typeUnmatched: 12,
  temporaryFailure: 2,
  longGetAborted: 15,
  noLongGetInProgress: 16,
  longSetAborted: 17,
  noLongSetInProgress: 18,
  dataBlockNumberInvalid: 19,
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
  /** The same as `hls` as a key set (suite, system title, keys); takes precedence over `hls`. */
  readonly keySet?: DlmsKeySet;
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
  pendingHls: { stoc: Uint8Array; ctos: Uint8Array; mechanism: number; peerKey: KeyObject | null } | null;
}

export class DlmsServerSession {
  private level: AccessLevel | null = null;
  private maxPdu = SERVER_MAX_PDU;
  private pendingBlocks: { invokeId: number; data: Uint8Array; next: number } | null = null;
  private pendingSet: {
    invokeId: number;
    attribute: AttributeDescriptor;
    parts: Uint8Array[];
    bytes: number;
    next: number;
  } | null = null;
  private cipher: CipherState | null = null;
  requests = 0;
  refusals = 0;
  /** Ciphered APDUs refused: bad tag (wrong keys) or a replayed invocation counter. */
  securityRefusals = 0;
  /** Of those, replayed (or lower) invocation counters. */
  replaysRefused = 0;

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
      return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.operationNotPossible);
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
    if (aarq.mechanism === MECHANISM_HLS_GMAC || aarq.mechanism === MECHANISM_HLS_ECDSA)
      return this.associateHls(aarq);
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

  /**
   * HLS mechanism 5 (GMAC) or 7 (ECDSA, suite 1): the AARQ carries CtoS and a ciphered initiate; the AARE
   * returns StoC; pass 3/4 follow.
   */
  private associateHls(aarq: Aarq): Uint8Array {
    const keySet = this.credentials.keySet;
    const hls = keySet === undefined ? this.credentials.hls : cipherContext(keySet);
    const ecdsa = aarq.mechanism === MECHANISM_HLS_ECDSA;
    const reject = (diagnostic: number) => {
      this.refusals++;
      return encodeAare({
        contextId: CONTEXT_LN_CIPHERED,
        result: 1,
        diagnostic,
        respondingApTitle: null,
        mechanism: aarq.mechanism,
        authenticationValue: null,
        conformance: 0,
        maxPduSize: 0,
      });
    };
    if (hls === undefined || this.clientWPort !== CLIENT_MANAGEMENT) return reject(11);
    // Mechanism 7 needs suite-1 keys: our signing key and the client's certificate key.
    if (ecdsa && keySet?.asymmetric === undefined) return reject(11);
    if (
      aarq.contextId !== CONTEXT_LN_CIPHERED ||
      aarq.callingApTitle === null ||
      aarq.callingApTitle.length !== 8
    )
      return reject(2);
    const ctos = aarq.authenticationValue;
    if (
      ctos === null ||
      ctos.length < (ecdsa ? HLS_ECDSA_CHALLENGE_BYTES_MIN : 8) ||
      ctos.length > (ecdsa ? HLS_ECDSA_CHALLENGE_BYTES_MAX : 64) ||
      aarq.cipheredInitiate === null ||
      aarq.cipheredInitiate === undefined
    )
      return reject(13);
    const peerKey = ecdsa ? peerSigningKey(keySet!, aarq.callingApTitle) : null;
    if (ecdsa && peerKey === null) {
      this.securityRefusals++;
      return reject(13); // no certificate for this client's system title
    }
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
      ecdsa ? HLS_ECDSA_CHALLENGE_BYTES_MIN : HLS_STOC_BYTES,
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
      pendingHls: { stoc, ctos, mechanism: aarq.mechanism, peerKey },
    };
    const response = encodeInitiateResponse(SERVER_CONFORMANCE & initiate.conformance, this.maxPdu);
    return encodeAare({
      contextId: CONTEXT_LN_CIPHERED,
      result: 0,
      diagnostic: 0,
      respondingApTitle: hls.systemTitle,
      mechanism: aarq.mechanism,
      authenticationValue: stoc,
      conformance: 0,
      maxPduSize: 0,
      cipheredInitiate: protect(hls, 0x30 | hls.suite, this.cipher.invocationCounter++, response),
    });
  }

  private handleCiphered(request: Uint8Array): Uint8Array {
    const cipher = this.cipher!;
    const tag = request[0]!;
    const responseTag = CIPHERED_RESPONSE[tag];
    if (responseTag === undefined) {
      this.refusals++; // a plain APDU on a ciphered association
      return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.operationNotPossible);
    }
    if (request.length > this.maxPdu + CIPHERED_OVERHEAD_BYTES) {
      this.refusals++;
      return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.pduTooLong);
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
      if (error.code === "REPLAYED_INVOCATION_COUNTER") {
        this.replaysRefused++;
        // Green Book: invocation-counter-error tells the client the lowest counter still accepted.
        const last = cipher.guard.lastAccepted(cipher.clientSystemTitle) ?? 0;
        return exception(
          EXCEPTION_STATE.serviceNotAllowed,
          EXCEPTION_SERVICE.invocationCounterError,
          Math.min(last + 1, 0xffffffff),
        );
      }
      return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.decipheringError);
    }
    let answer: Uint8Array;
    if (cipher.pendingHls !== null) answer = this.hlsPass3(plain, cipher);
    else if (this.level === null)
      answer = exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.operationNotPossible);
    else answer = this.serve(plain);
    const content = protect(cipher.ctx, 0x30 | cipher.ctx.suite, cipher.invocationCounter++, answer);
    return tag === 0xdb
      ? encodeGeneralGloCiphering(cipher.ctx.systemTitle, content)
      : Uint8Array.of(responseTag, ...encodeLength(content.length), ...content);
  }

  /** Pass 3/4: ACTION reply_to_HLS_authentication on the association object carries f(StoC). */
  private hlsPass3(plain: Uint8Array, cipher: CipherState): Uint8Array {
    const pending = cipher.pendingHls!;
    const r = new DlmsReader(plain);
    try {
      if (r.u8("tag") !== 0xc3 || r.u8("type") !== 1)
        return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.operationNotPossible);
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
        if (pending.mechanism === MECHANISM_HLS_ECDSA)
          verifyHlsEcdsa(
            pending.peerKey!,
            cipher.clientSystemTitle,
            cipher.ctx.systemTitle,
            pending.stoc,
            pending.ctos,
            parameters.value,
          );
        else verifyHlsGmac(cipher.ctx, cipher.clientSystemTitle, pending.stoc, parameters.value);
      } catch (error) {
        if (!(error instanceof DlmsError)) throw error;
        this.securityRefusals++;
        cipher.pendingHls = null;
        this.cipher = null; // authentication failed: the association is gone
        return Uint8Array.of(0xc7, 1, invokeId, ACCESS.readWriteDenied, 0);
      }
      cipher.pendingHls = null;
      this.level = "management";
      const fCtoS =
        pending.mechanism === MECHANISM_HLS_ECDSA
          ? hlsEcdsaResponse(
              this.credentials.keySet!.asymmetric!.signingKey,
              cipher.ctx.systemTitle,
              cipher.clientSystemTitle,
              pending.ctos,
              pending.stoc,
            )
          : hlsGmacResponse(cipher.ctx, cipher.invocationCounter++, pending.ctos);
      return Uint8Array.of(0xc7, 1, invokeId, 0, 1, 0, ...encodeData({ type: "octet-string", value: fCtoS }));
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.otherReason);
    }
  }

  /** Room the ciphered form takes around a response (glo tag, length, SC ‖ IC, GCM tag). */
  private get overheadBytes(): number {
    return this.cipher === null ? 0 : CIPHERED_OVERHEAD_BYTES;
  }

  private serve(request: Uint8Array): Uint8Array {
    if (request.length > this.maxPdu) {
      this.refusals++;
      return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.pduTooLong);
    }
    const tag = request[0];
    if (tag !== 0xc0 && tag !== 0xc1 && tag !== 0xc3) {
      this.refusals++;
      return exception(EXCEPTION_STATE.serviceUnknown, EXCEPTION_SERVICE.serviceNotSupported);
    }
    try {
      const apdu = decodeApdu(request);
      switch (apdu.kind) {
        case "get-request-normal": {
          this.pendingBlocks = null; // a new request abandons an unfinished block transfer
          const answer = this.readAttribute(apdu.attribute, apdu.accessSelection);
          if ("error" in answer) return Uint8Array.of(0xc4, 1, apdu.invokeId, 1, answer.error);
          const data = encodeData(answer.data);
          if (data.length + 4 <= this.maxPdu - this.overheadBytes)
            return Uint8Array.of(0xc4, 1, apdu.invokeId, 0, ...data);
          return this.startBlocks(apdu.invokeId, data);
        }
        case "get-request-next":
          return this.getNext(apdu.invokeId, apdu.blockNumber);
        case "get-request-with-list": {
          this.pendingBlocks = null;
          const results = apdu.attributes.map((item) =>
            this.readAttribute(item.attribute, item.accessSelection),
          );
          const body = encodeGetResultList(results);
          if (body.length + 3 <= this.maxPdu - this.overheadBytes)
            return Uint8Array.of(0xc4, 3, apdu.invokeId, ...body);
          // Green Book: a with-list response too long for one PDU travels as datablocks of its result list.
          return this.startBlocks(apdu.invokeId, body);
        }
        case "set-request-normal": {
          this.pendingSet = null;
          if (apdu.accessSelection !== null && apdu.accessSelection !== undefined)
            return Uint8Array.of(0xc5, 1, apdu.invokeId, ACCESS.otherReason);
          return Uint8Array.of(0xc5, 1, apdu.invokeId, this.writeAttribute(apdu.attribute, apdu.value));
        }
        case "set-request-with-first-datablock": {
          this.pendingSet = null;
          if (apdu.accessSelection !== null)
            return this.setLast(apdu.invokeId, ACCESS.otherReason, apdu.blockNumber);
          if (apdu.blockNumber !== 1)
            return this.setLast(apdu.invokeId, ACCESS.dataBlockNumberInvalid, apdu.blockNumber);
          this.pendingSet = {
            invokeId: apdu.invokeId,
            attribute: apdu.attribute,
            parts: [],
            bytes: 0,
            next: 1,
          };
          return this.setBlock(apdu.invokeId, apdu.blockNumber, apdu.lastBlock, apdu.rawData);
        }
        case "set-request-with-datablock":
          return this.setBlock(apdu.invokeId, apdu.blockNumber, apdu.lastBlock, apdu.rawData);
        case "action-request-normal": {
          const { result, data } = this.model.action(
            this.level!,
            apdu.method.classId,
            apdu.method.obis,
            apdu.method.methodId,
            apdu.parameters,
          );
          return data === undefined
            ? Uint8Array.of(0xc7, 1, apdu.invokeId, result, 0)
            : Uint8Array.of(0xc7, 1, apdu.invokeId, result, 1, 0, ...encodeData(data));
        }
        default:
          this.refusals++;
          return exception(EXCEPTION_STATE.serviceNotAllowed, EXCEPTION_SERVICE.serviceNotSupported);
      }
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.refusals++;
      // A request choice we do not serve (e.g. ACTION with-pblock) vs. a malformed one.
      return exception(
        EXCEPTION_STATE.serviceNotAllowed,
        error.code === "UNSUPPORTED" ? EXCEPTION_SERVICE.serviceNotSupported : EXCEPTION_SERVICE.otherReason,
      );
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

  private readAttribute(
    attribute: AttributeDescriptor,
    selection: { selector: number; parameters: Data } | null,
  ): GetDataResult {
    const answer = this.model.get(
      this.level!,
      attribute.classId,
      attribute.obis,
      attribute.attributeId,
      selection,
    );
    return typeof answer === "number" ? { error: answer } : { data: answer };
  }

  private writeAttribute(attribute: AttributeDescriptor, value: Data): number {
    return this.model.set(this.level!, attribute.classId, attribute.obis, attribute.attributeId, value);
  }

  private startBlocks(invokeId: number, data: Uint8Array): Uint8Array {
    this.pendingBlocks = { invokeId, data, next: 1 };
    return this.nextBlock(this.pendingBlocks);
  }

  /** GET next: the client names the last block it received; anything else ends the transfer. */
  private getNext(invokeId: number, blockNumber: number): Uint8Array {
    const pending = this.pendingBlocks;
    if (pending === null || pending.invokeId !== invokeId) {
      this.refusals++;
      return this.blockError(invokeId, blockNumber, ACCESS.noLongGetInProgress);
    }
    if (blockNumber !== pending.next - 1) {
      this.refusals++;
      this.pendingBlocks = null;
      return this.blockError(invokeId, blockNumber, ACCESS.dataBlockNumberInvalid);
    }
    return this.nextBlock(pending);
  }

  /** get-response-with-datablock carrying a data-access-result instead of raw data; last-block set. */
  private blockError(invokeId: number, blockNumber: number, result: number): Uint8Array {
    return encodeApdu({
      kind: "get-response-with-datablock",
      invokeId,
      lastBlock: true,
      blockNumber,
      result: { error: result },
    });
  }

  /** get-response-with-datablock: last-block, block-number, raw-data (octet-string). */
  private nextBlock(pending: { invokeId: number; data: Uint8Array; next: number }): Uint8Array {
    // Header: tag, choice, invoke id, last-block, block-number (4), result choice, length (≤ 3).
    const chunk = this.maxPdu - this.overheadBytes - 16;
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

  /** One SET datablock: acknowledged with set-response-datablock, the last one answered with the result. */
  private setBlock(invokeId: number, blockNumber: number, last: boolean, rawData: Uint8Array): Uint8Array {
    const pending = this.pendingSet;
    if (pending === null || pending.invokeId !== invokeId) {
      this.refusals++;
      return this.setLast(invokeId, ACCESS.noLongSetInProgress, blockNumber);
    }
    if (blockNumber !== pending.next) {
      this.refusals++;
      this.pendingSet = null;
      return this.setLast(invokeId, ACCESS.dataBlockNumberInvalid, blockNumber);
    }
    if (pending.bytes + rawData.length > SET_BLOCK_BYTES_MAX) {
      this.refusals++;
      this.pendingSet = null;
      return this.setLast(invokeId, ACCESS.longSetAborted, blockNumber);
    }
    pending.parts.push(rawData);
    pending.bytes += rawData.length;
    pending.next++;
    if (!last) return encodeApdu({ kind: "set-response-datablock", invokeId, blockNumber });
    this.pendingSet = null;
    let value: Data;
    try {
      value = decodeData(new Uint8Array(Buffer.concat(pending.parts)));
    } catch (error) {
      if (!(error instanceof DlmsError)) throw error;
      this.refusals++;
      return this.setLast(invokeId, ACCESS.typeUnmatched, blockNumber);
    }
    return this.setLast(invokeId, this.writeAttribute(pending.attribute, value), blockNumber);
  }

  private setLast(invokeId: number, result: number, blockNumber: number): Uint8Array {
    return encodeApdu({ kind: "set-response-last-datablock", invokeId, result, blockNumber });
  }
}

export function describeTarget(classId: number, obis: Obis, id: number): string {
  return `class ${classId} ${formatObis(obis)} #${id}`;
}
