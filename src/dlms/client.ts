import {
  CONFORMANCE,
  CONTEXT_LN,
  CONTEXT_LN_CIPHERED,
  decodeAare,
  decodeInitiate,
  encodeAarq,
  encodeInitiateRequest,
  MECHANISM_HLS_ECDSA,
  MECHANISM_HLS_GMAC,
  MECHANISM_LLS,
  MECHANISM_NONE,
  RLRQ,
} from "./acse.ts";
import {
  type AccessSelection,
  type Apdu,
  DATA_ACCESS_RESULTS,
  decodeApdu,
  decodeGetResultList,
  EXCEPTION_SERVICE_ERRORS,
  EXCEPTION_STATE_ERRORS,
  encodeApdu,
  formatObis,
  type GetDataResult,
  type Obis,
} from "./apdu.ts";
import { type Data, decodeData, encodeData } from "./axdr.ts";
import { CIPHERED_OVERHEAD_BYTES } from "./ciphering.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import { cipherContext, type DlmsKeySet, peerSigningKey } from "./keys.ts";
import {
  hlsGmacResponse,
  InvocationCounterGuard,
  protect,
  type SecurityContext,
  unprotect,
  verifyHlsGmac,
} from "./security.ts";
import { hlsEcdsaResponse, verifyHlsEcdsa } from "./suite1.ts";

// The COSEM client the concentrator and the field tools use, over any request/response transport.

export const CLIENT_MAX_PDU = 1024;
/** Bound on GET blocks for one attribute: a meter cannot make the client buffer without limit. */
export const GET_BLOCKS_MAX = 4096;
/** Bound on the SET datablocks of one value (4096 × ~1 KiB: far above any writable attribute). */
export const SET_BLOCKS_MAX = 4096;
/** The conformance the client proposes: every service it can run. */
const CLIENT_CONFORMANCE =
  CONFORMANCE.get |
  CONFORMANCE.set |
  CONFORMANCE.action |
  CONFORMANCE.selectiveAccess |
  CONFORMANCE.multipleReferences |
  CONFORMANCE.blockTransferWithGetOrRead |
  CONFORMANCE.blockTransferWithSetOrWrite;

/** One attribute of a GET with-list. */
export interface AttributeRequest {
  readonly classId: number;
  readonly obis: Obis;
  readonly attributeId: number;
  readonly selection?: AccessSelection | null;
}

export type Exchange = (request: Uint8Array) => Promise<Uint8Array>;

const ASSOCIATION_DIAGNOSTICS: Record<number, string> = {
  1: "no reason given",
  2: "application context name not supported",
  11: "authentication mechanism name not recognised",
  13: "authentication failure (wrong password or keys)",
  14: "authentication required",
};

const CIPHERED_REQUEST: Record<number, number> = { 192: 0xc8, 193: 0xc9, 195: 0xcb };

export class DlmsClient {
  private invokeId = 1;
  private exchange: Exchange;
  maxPdu = CLIENT_MAX_PDU;
  /** Room left in each PDU for the ciphered form once the association is ciphered. */
  private overheadBytes = 0;
  /** The conformance block the meter granted (null before an association). */
  negotiatedConformance: number | null = null;

  constructor(private readonly transport: Exchange) {
    this.exchange = transport;
  }

  /** The largest plain request that still fits the negotiated PDU once ciphered (if the association is). */
  get requestBytesMax(): number {
    return this.maxPdu - this.overheadBytes;
  }

  /**
   * HLS mechanism 5 (GMAC), suite 0: ciphered AARQ with our challenge (CtoS), the meter's challenge (StoC)
   * in the AARE, then f(StoC) → f(CtoS) through the association object; every later APDU is glo-ciphered.
   * A suite-1 key set with asymmetric keys uses mechanism 7 (ECDSA P-256) instead of 5: f() are
   * signatures, checked with the meter's certificate key (`peerSigningKeys`), and the security control
   * byte carries suite 1.
   */
  async associateHls(
    keys: SecurityContext | DlmsKeySet,
    challenge: Uint8Array,
    firstInvocationCounter = 1,
  ): Promise<void> {
    const ctx = cipherContext(keys);
    const asymmetric = "asymmetric" in keys ? keys.asymmetric : undefined;
    const mechanism = asymmetric === undefined ? MECHANISM_HLS_GMAC : MECHANISM_HLS_ECDSA;
    const sc = 0x30 | ctx.suite;
    let invocationCounter = firstInvocationCounter;
    const conformance = CLIENT_CONFORMANCE;
    const aare = decodeAare(
      await this.transport(
        encodeAarq({
          contextId: CONTEXT_LN_CIPHERED,
          callingApTitle: ctx.systemTitle,
          mechanism,
          authenticationValue: challenge,
          conformance: 0,
          maxPduSize: 0,
          cipheredInitiate: protect(
            ctx,
            sc,
            invocationCounter++,
            encodeInitiateRequest(conformance, CLIENT_MAX_PDU),
          ),
        }),
      ),
    );
    if (
      aare.result !== 0 ||
      aare.respondingApTitle === null ||
      aare.authenticationValue === null ||
      !aare.cipheredInitiate
    ) {
      throw new DlmsError(
        "ASSOCIATION_REFUSED",
        `association refused: ${ASSOCIATION_DIAGNOSTICS[aare.diagnostic] ?? `diagnostic ${aare.diagnostic}`}`,
      );
    }
    const serverTitle = aare.respondingApTitle;
    const guard = new InvocationCounterGuard();
    const opened = unprotect(ctx, serverTitle, aare.cipheredInitiate);
    guard.accept(serverTitle, opened.invocationCounter);
    const initiate = decodeInitiate(opened.plaintext, true);
    this.maxPdu = initiate.maxPduSize;
    this.negotiatedConformance = initiate.conformance;
    this.overheadBytes = CIPHERED_OVERHEAD_BYTES;
    const stoc = aare.authenticationValue;
    this.exchange = async (plain) => {
      const tag = CIPHERED_REQUEST[plain[0]!];
      if (tag === undefined) return this.transport(plain);
      const content = protect(ctx, sc, invocationCounter++, plain);
      const response = await this.transport(Uint8Array.of(tag, ...encodeLength(content.length), ...content));
      if (response[0] === 0xd8) return response;
      const r = new DlmsReader(response);
      r.u8("glo tag");
      const back = unprotect(ctx, serverTitle, r.bytes(r.length("ciphered content"), "ciphered content"));
      guard.accept(serverTitle, back.invocationCounter);
      return back.plaintext;
    };
    const serverKey = asymmetric === undefined ? null : peerSigningKey(keys as DlmsKeySet, serverTitle);
    if (asymmetric !== undefined && serverKey === null)
      throw new DlmsError(
        "AUTH_FAILED",
        `no certificate for the meter's system title ${Buffer.from(serverTitle).toString("hex")}`,
      );
    const fStoC =
      asymmetric === undefined
        ? hlsGmacResponse(ctx, invocationCounter++, stoc)
        : hlsEcdsaResponse(asymmetric.signingKey, ctx.systemTitle, serverTitle, stoc, challenge);
    const pass4 = await this.action(15, [0, 0, 40, 0, 0, 255], 1, {
      type: "octet-string",
      value: fStoC,
    }).catch((error: unknown) => {
      throw error instanceof DlmsError && error.code === "ACCESS_DENIED"
        ? new DlmsError("AUTH_FAILED", "the meter refused f(StoC): wrong keys")
        : error;
    });
    if (pass4.data?.type !== "octet-string")
      throw new DlmsError("AUTH_FAILED", "the meter returned no f(CtoS)");
    if (serverKey === null) verifyHlsGmac(ctx, serverTitle, challenge, pass4.data.value);
    else verifyHlsEcdsa(serverKey, serverTitle, ctx.systemTitle, challenge, stoc, pass4.data.value);
  }

  async associate(options: { password?: Uint8Array } = {}): Promise<void> {
    const mechanism = options.password === undefined ? MECHANISM_NONE : MECHANISM_LLS;
    const aare = decodeAare(
      await this.exchange(
        encodeAarq({
          contextId: CONTEXT_LN,
          callingApTitle: null,
          mechanism,
          authenticationValue: options.password ?? null,
          conformance: CLIENT_CONFORMANCE,
          maxPduSize: CLIENT_MAX_PDU,
        }),
      ),
    );
    if (aare.result !== 0) {
      throw new DlmsError(
        "ASSOCIATION_REFUSED",
        `association refused: ${ASSOCIATION_DIAGNOSTICS[aare.diagnostic] ?? `diagnostic ${aare.diagnostic}`}`,
      );
    }
    this.maxPdu = aare.maxPduSize;
    this.negotiatedConformance = aare.conformance;
  }

  async get(
    classId: number,
    obis: Obis,
    attributeId: number,
    selection: { selector: number; parameters: Data } | null = null,
  ): Promise<Data> {
    const invokeId = this.nextInvoke();
    const response = await this.exchange(
      encodeApdu({
        kind: "get-request-normal",
        invokeId,
        attribute: { classId, obis, attributeId },
        accessSelection: selection,
      }),
    );
    if (response[0] === 0xc4 && response[1] === 2) {
      const raw = await this.collectBlocks(response, invokeId);
      if (raw instanceof Uint8Array) return decodeData(raw);
      return this.unwrapGet(raw, classId, obis, attributeId);
    }
    return this.unwrapGet(decodeApdu(response), classId, obis, attributeId);
  }

  /**
   * Block transfer (IEC 62056-5-3): collects the raw-data of get-response-with-datablock until the last
   * block, asking for each next one. Returns the joined raw data, or the non-block APDU the meter ended with.
   */
  private async collectBlocks(first: Uint8Array, invokeId: number): Promise<Uint8Array | Apdu> {
    let response = first;
    const chunks: Uint8Array[] = [];
    for (let blocks = 0; ; blocks++) {
      if (blocks >= GET_BLOCKS_MAX)
        throw new DlmsError("BAD_LENGTH", `more than ${GET_BLOCKS_MAX} GET blocks`);
      const r = new DlmsReader(response);
      r.bytes(3, "header");
      const last = r.u8("last-block") !== 0;
      const block = r.u32("block-number");
      if (r.u8("result choice") !== 0) {
        const code = r.u8("result");
        throw new DlmsError(
          "DATA_ACCESS_ERROR",
          `block ${block}: ${DATA_ACCESS_RESULTS[code] ?? `data-access-result ${code}`}`,
        );
      }
      if (block !== blocks + 1)
        throw new DlmsError("BAD_VALUE", `GET block ${block} arrived where block ${blocks + 1} was due`);
      chunks.push(r.bytes(r.length("raw-data"), "raw-data"));
      if (last) return new Uint8Array(Buffer.concat(chunks));
      response = await this.exchange(
        Uint8Array.of(
          0xc0,
          2,
          invokeId,
          (block >>> 24) & 0xff,
          (block >>> 16) & 0xff,
          (block >>> 8) & 0xff,
          block & 0xff,
        ),
      );
      if (response[0] !== 0xc4 || response[1] !== 2) return decodeApdu(response);
    }
  }

  /**
   * GET with-list: several attributes in one request (conformance multiple-references). The list is split
   * into requests that fit the negotiated PDU; results come back in order, one per attribute, each data
   * or a data-access-result.
   */
  async getWithList(items: readonly AttributeRequest[]): Promise<GetDataResult[]> {
    const results: GetDataResult[] = [];
    if (!this.granted(CONFORMANCE.multipleReferences)) {
      // A meter without multiple-references: one GET per attribute, results in the same shape.
      for (const item of items) results.push(await this.getResult(item));
      return results;
    }
    const budget = this.maxPdu - this.overheadBytes;
    let batch: AttributeRequest[] = [];
    const flush = async () => {
      if (batch.length > 0) results.push(...(await this.getList(batch)));
      batch = [];
    };
    for (const item of items) {
      const candidate = [...batch, item];
      if (batch.length > 0 && this.listRequest(0, candidate).length > budget) await flush();
      batch.push(item);
      if (batch.length === 1 && this.listRequest(0, batch).length > budget)
        throw new DlmsError(
          "BAD_LENGTH",
          `GET with-list item ${formatObis(item.obis)} alone exceeds the negotiated PDU of ${this.maxPdu} bytes`,
        );
    }
    await flush();
    return results;
  }

  private granted(bit: number): boolean {
    return this.negotiatedConformance === null || (this.negotiatedConformance & bit) !== 0;
  }

  private async getResult(item: AttributeRequest): Promise<GetDataResult> {
    try {
      return { data: await this.get(item.classId, item.obis, item.attributeId, item.selection ?? null) };
    } catch (error) {
      if (error instanceof DlmsError && error.dataAccessResult !== undefined)
        return { error: error.dataAccessResult };
      throw error;
    }
  }

  private listRequest(invokeId: number, items: readonly AttributeRequest[]): Uint8Array {
    return encodeApdu({
      kind: "get-request-with-list",
      invokeId,
      attributes: items.map((item) => ({
        attribute: { classId: item.classId, obis: item.obis, attributeId: item.attributeId },
        accessSelection: item.selection ?? null,
      })),
    });
  }

  private async getList(items: readonly AttributeRequest[]): Promise<GetDataResult[]> {
    const invokeId = this.nextInvoke();
    const response = await this.exchange(this.listRequest(invokeId, items));
    let results: GetDataResult[];
    if (response[0] === 0xc4 && response[1] === 2) {
      const raw = await this.collectBlocks(response, invokeId);
      if (!(raw instanceof Uint8Array)) throw this.unexpected(raw);
      results = decodeGetResultList(raw);
    } else {
      const apdu = decodeApdu(response);
      if (apdu.kind !== "get-response-with-list") throw this.unexpected(apdu);
      results = apdu.results;
    }
    if (results.length !== items.length)
      throw new DlmsError(
        "BAD_LENGTH",
        `GET with-list of ${items.length} attributes answered with ${results.length} results`,
      );
    return results;
  }

  /** SET normal, or with datablocks when the request would exceed the negotiated PDU (IEC 62056-5-3). */
  async set(classId: number, obis: Obis, attributeId: number, value: Data): Promise<void> {
    const invokeId = this.nextInvoke();
    const attribute = { classId, obis, attributeId };
    const what = `SET ${formatObis(obis)}:${attributeId}`;
    const normal = encodeApdu({ kind: "set-request-normal", invokeId, attribute, value });
    const budget = this.maxPdu - this.overheadBytes;
    if (normal.length <= budget) {
      const apdu = decodeApdu(await this.exchange(normal));
      if (apdu.kind !== "set-response-normal") throw this.unexpected(apdu);
      if (apdu.result !== 0) throw accessError(apdu.result, what);
      return;
    }
    if (!this.granted(CONFORMANCE.blockTransferWithSetOrWrite))
      throw new DlmsError(
        "BAD_LENGTH",
        `${what}: ${normal.length} bytes exceed the PDU of ${this.maxPdu} and the meter did not grant block-transfer-with-set`,
      );
    // First-datablock header: tag, choice, invoke id, descriptor (9), selection flag, last, block (4), length (≤ 3).
    const blockBytes = budget - 24;
    if (blockBytes < 1)
      throw new DlmsError(
        "BAD_LENGTH",
        `negotiated PDU of ${this.maxPdu} bytes leaves no room for SET blocks`,
      );
    const raw = encodeData(value);
    const blocks = Math.ceil(raw.length / blockBytes);
    if (blocks > SET_BLOCKS_MAX)
      throw new DlmsError("BAD_LENGTH", `${what}: ${blocks} datablocks exceed ${SET_BLOCKS_MAX}`);
    for (let block = 1; block <= blocks; block++) {
      const rawData = raw.subarray((block - 1) * blockBytes, block * blockBytes);
      const lastBlock = block === blocks;
      const request =
        block === 1
          ? encodeApdu({
              kind: "set-request-with-first-datablock",
              invokeId,
              attribute,
              accessSelection: null,
              lastBlock,
              blockNumber: block,
              rawData,
            })
          : encodeApdu({
              kind: "set-request-with-datablock",
              invokeId,
              lastBlock,
              blockNumber: block,
              rawData,
            });
      const apdu = decodeApdu(await this.exchange(request));
      if (apdu.kind === "set-response-last-datablock") {
        if (apdu.result !== 0) throw accessError(apdu.result, `${what} block ${apdu.blockNumber}`);
        if (!lastBlock || apdu.blockNumber !== block)
          throw new DlmsError(
            "BAD_VALUE",
            `${what}: the meter closed the transfer at block ${apdu.blockNumber} of ${blocks}`,
          );
        return;
      }
      if (apdu.kind !== "set-response-datablock") throw this.unexpected(apdu);
      if (lastBlock || apdu.blockNumber !== block)
        throw new DlmsError(
          "BAD_VALUE",
          `${what}: block ${block}${lastBlock ? " (last)" : ""} acknowledged as block ${apdu.blockNumber}`,
        );
    }
  }

  async action(
    classId: number,
    obis: Obis,
    methodId: number,
    parameters: Data | null,
  ): Promise<{ result: number; data: Data | null }> {
    const apdu = decodeApdu(
      await this.exchange(
        encodeApdu({
          kind: "action-request-normal",
          invokeId: this.nextInvoke(),
          method: { classId, obis, methodId },
          parameters,
        }),
      ),
    );
    if (apdu.kind !== "action-response-normal") throw this.unexpected(apdu);
    if (apdu.result !== 0 && apdu.result !== 2)
      throw accessError(apdu.result, `ACTION ${formatObis(obis)}/${methodId}`);
    const returned = apdu.returned;
    return { result: apdu.result, data: returned !== null && "data" in returned ? returned.data : null };
  }

  async release(): Promise<void> {
    await this.exchange(RLRQ);
  }

  private unwrapGet(apdu: Apdu, classId: number, obis: Obis, attributeId: number): Data {
    if (apdu.kind !== "get-response-normal") throw this.unexpected(apdu);
    if ("error" in apdu.result)
      throw accessError(apdu.result.error, `GET class ${classId} ${formatObis(obis)}:${attributeId}`);
    return apdu.result.data;
  }

  private unexpected(apdu: Apdu): DlmsError {
    if (apdu.kind === "exception-response") return exceptionError(apdu);
    return new DlmsError("BAD_TAG", `unexpected ${apdu.kind}`);
  }

  private nextInvoke(): number {
    this.invokeId = (this.invokeId % 15) + 1;
    return 0xc0 | this.invokeId; // high priority, confirmed service
  }
}

/** An exception-response as a typed error: the service-error says what the meter refused. */
export function exceptionError(apdu: Extract<Apdu, { kind: "exception-response" }>): DlmsError {
  const names = `${EXCEPTION_STATE_ERRORS[apdu.stateError] ?? `state-error ${apdu.stateError}`} / ${
    EXCEPTION_SERVICE_ERRORS[apdu.serviceError] ?? `service-error ${apdu.serviceError}`
  }`;
  switch (apdu.serviceError) {
    case 1:
      return new DlmsError("NOT_ASSOCIATED", `the meter refused the request (${names}): not associated?`);
    case 2:
      return new DlmsError("UNSUPPORTED", `the meter does not support this service (${names})`);
    case 4:
      return new DlmsError("BAD_LENGTH", `the request exceeds the meter's max PDU (${names})`);
    case 5:
      return new DlmsError(
        "DECRYPT_FAILED",
        `the meter could not decipher the request (${names}): wrong keys?`,
      );
    case 6:
      return new DlmsError(
        "REPLAYED_INVOCATION_COUNTER",
        `the meter refused the invocation counter (${names})${
          apdu.invocationCounter === undefined ? "" : `; it expects at least ${apdu.invocationCounter}`
        }`,
      );
    default:
      return new DlmsError("SERVICE_REFUSED", `the meter answered with an exception (${names})`);
  }
}

function accessError(code: number, what: string): DlmsError {
  const name = DATA_ACCESS_RESULTS[code] ?? `result ${code}`;
  const error =
    code === 3
      ? new DlmsError("ACCESS_DENIED", `${what}: ${name}`)
      : code === 4
        ? new DlmsError("OBJECT_UNDEFINED", `${what}: ${name}`)
        : new DlmsError("DATA_ACCESS_ERROR", `${what}: ${name}`);
  error.dataAccessResult = code;
  return error;
}
