import {
  CONFORMANCE,
  CONTEXT_LN,
  CONTEXT_LN_CIPHERED,
  decodeAare,
  decodeInitiate,
  encodeAarq,
  encodeInitiateRequest,
  MECHANISM_HLS_GMAC,
  MECHANISM_LLS,
  MECHANISM_NONE,
  RLRQ,
} from "./acse.ts";
import { type Apdu, DATA_ACCESS_RESULTS, decodeApdu, encodeApdu, formatObis, type Obis } from "./apdu.ts";
import { type Data, decodeData } from "./axdr.ts";
import { DlmsError, DlmsReader, encodeLength } from "./errors.ts";
import {
  hlsGmacResponse,
  InvocationCounterGuard,
  protect,
  type SecurityContext,
  unprotect,
  verifyHlsGmac,
} from "./security.ts";

// The COSEM client the concentrator and the field tools use, over any request/response transport.

export const CLIENT_MAX_PDU = 1024;
/** Bound on GET blocks for one attribute: a meter cannot make the client buffer without limit. */
export const GET_BLOCKS_MAX = 4096;

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

  constructor(private readonly transport: Exchange) {
    this.exchange = transport;
  }

  /**
   * HLS mechanism 5 (GMAC), suite 0: ciphered AARQ with our challenge (CtoS), the meter's challenge (StoC)
   * in the AARE, then f(StoC) → f(CtoS) through the association object; every later APDU is glo-ciphered.
   */
  async associateHls(ctx: SecurityContext, challenge: Uint8Array, firstInvocationCounter = 1): Promise<void> {
    let invocationCounter = firstInvocationCounter;
    const conformance =
      CONFORMANCE.get |
      CONFORMANCE.set |
      CONFORMANCE.action |
      CONFORMANCE.selectiveAccess |
      CONFORMANCE.blockTransferWithGetOrRead;
    const aare = decodeAare(
      await this.transport(
        encodeAarq({
          contextId: CONTEXT_LN_CIPHERED,
          callingApTitle: ctx.systemTitle,
          mechanism: MECHANISM_HLS_GMAC,
          authenticationValue: challenge,
          conformance: 0,
          maxPduSize: 0,
          cipheredInitiate: protect(
            ctx,
            0x30,
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
    this.maxPdu = decodeInitiate(opened.plaintext, true).maxPduSize;
    const stoc = aare.authenticationValue;
    this.exchange = async (plain) => {
      const tag = CIPHERED_REQUEST[plain[0]!];
      if (tag === undefined) return this.transport(plain);
      const content = protect(ctx, 0x30, invocationCounter++, plain);
      const response = await this.transport(Uint8Array.of(tag, ...encodeLength(content.length), ...content));
      if (response[0] === 0xd8) return response;
      const r = new DlmsReader(response);
      r.u8("glo tag");
      const back = unprotect(ctx, serverTitle, r.bytes(r.length("ciphered content"), "ciphered content"));
      guard.accept(serverTitle, back.invocationCounter);
      return back.plaintext;
    };
    const fStoC = hlsGmacResponse(ctx, invocationCounter++, stoc);
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
    verifyHlsGmac(ctx, serverTitle, challenge, pass4.data.value);
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
          conformance:
            CONFORMANCE.get |
            CONFORMANCE.set |
            CONFORMANCE.action |
            CONFORMANCE.selectiveAccess |
            CONFORMANCE.blockTransferWithGetOrRead,
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
  }

  async get(
    classId: number,
    obis: Obis,
    attributeId: number,
    selection: { selector: number; parameters: Data } | null = null,
  ): Promise<Data> {
    const invokeId = this.nextInvoke();
    let response = await this.exchange(
      encodeApdu({
        kind: "get-request-normal",
        invokeId,
        attribute: { classId, obis, attributeId },
        accessSelection: selection,
      }),
    );
    if (response[0] === 0xc4 && response[1] === 2) {
      // Block transfer: collect raw-data blocks until the last one, asking for each next block.
      const chunks: Uint8Array[] = [];
      for (let blocks = 0; ; blocks++) {
        if (blocks >= GET_BLOCKS_MAX)
          throw new DlmsError("BAD_LENGTH", `more than ${GET_BLOCKS_MAX} GET blocks`);
        const r = new DlmsReader(response);
        r.bytes(3, "header");
        const last = r.u8("last-block") !== 0;
        const block = r.u32("block-number");
        if (r.u8("result choice") !== 0)
          throw new DlmsError(
            "DATA_ACCESS_ERROR",
            `block ${block}: ${DATA_ACCESS_RESULTS[r.u8("result")] ?? "error"}`,
          );
        chunks.push(r.bytes(r.length("raw-data"), "raw-data"));
        if (last) break;
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
        if (response[0] !== 0xc4 || response[1] !== 2)
          return this.unwrapGet(decodeApdu(response), classId, obis, attributeId);
      }
      return decodeData(Buffer.concat(chunks));
    }
    return this.unwrapGet(decodeApdu(response), classId, obis, attributeId);
  }

  async set(classId: number, obis: Obis, attributeId: number, value: Data): Promise<void> {
    const apdu = decodeApdu(
      await this.exchange(
        encodeApdu({
          kind: "set-request-normal",
          invokeId: this.nextInvoke(),
          attribute: { classId, obis, attributeId },
          value,
        }),
      ),
    );
    if (apdu.kind !== "set-response-normal") throw this.unexpected(apdu);
    if (apdu.result !== 0) throw accessError(apdu.result, `SET ${formatObis(obis)}:${attributeId}`);
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
    if (apdu.kind === "exception-response")
      return new DlmsError(
        "NOT_ASSOCIATED",
        `the meter answered with an exception (state ${apdu.stateError}, service ${apdu.serviceError}): not associated?`,
      );
    return new DlmsError("BAD_TAG", `unexpected ${apdu.kind}`);
  }

  private nextInvoke(): number {
    this.invokeId = (this.invokeId % 15) + 1;
    return 0xc0 | this.invokeId; // high priority, confirmed service
  }
}

function accessError(code: number, what: string): DlmsError {
  const name = DATA_ACCESS_RESULTS[code] ?? `result ${code}`;
  if (code === 3) return new DlmsError("ACCESS_DENIED", `${what}: ${name}`);
  if (code === 4) return new DlmsError("OBJECT_UNDEFINED", `${what}: ${name}`);
  return new DlmsError("DATA_ACCESS_ERROR", `${what}: ${name}`);
}
