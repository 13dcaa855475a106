import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  CONFORMANCE,
  type CosemObjectModel,
  connectDlms,
  type Data,
  DlmsClient,
  type DlmsKeySet,
  DlmsServerSession,
  decodeAare,
  decodeApdu,
  encodeAare,
  encodeApdu,
  listenDlms,
  type Obis,
  parseObis,
  SET_BLOCK_BYTES_MAX,
} from "../../src/dlms/index.ts";
import { BlobModel } from "./blob-model.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 300);

// GET with-list, SET with datablocks and the exception / data-access-result codes of every refused
// path, served by DlmsServerSession and driven by DlmsClient, plain and glo-ciphered (HLS-GMAC suite 0).

const PASSWORD = new TextEncoder().encode("12345678");
const METER_KEYS: DlmsKeySet = {
  suite: 0,
  systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 7),
  encryptionKey: Uint8Array.from(Buffer.from("000102030405060708090a0b0c0d0e0f", "hex")),
  authenticationKey: Uint8Array.from(Buffer.from("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf", "hex")),
};
const CLIENT_KEYS: DlmsKeySet = {
  ...METER_KEYS,
  systemTitle: Uint8Array.of(0x48, 0x45, 0x53, 0, 0, 0, 0, 1),
};

function pair(model: CosemObjectModel, clientWPort: number) {
  const session = new DlmsServerSession(
    model,
    { lowLevelPassword: PASSWORD, keySet: METER_KEYS, challenge: (n) => new Uint8Array(n).fill(0x5c) },
    clientWPort,
  );
  const sent: Uint8Array[] = [];
  const received: Uint8Array[] = [];
  const client = new DlmsClient(async (request) => {
    sent.push(request);
    const answer = session.handle(request) ?? new Uint8Array(0);
    received.push(answer);
    return answer;
  });
  return { session, client, sent, received };
}

const blob = (i: number): Obis => parseObis(`0.0.96.128.${i}.255`);
const octets = (bytes: number, fill: number): Data => ({
  type: "octet-string",
  value: new Uint8Array(bytes).fill(fill),
});

for (const mode of ["plain (LLS)", "glo-ciphered (HLS-GMAC)"] as const) {
  const associate = async (client: DlmsClient) =>
    mode === "plain (LLS)"
      ? client.associate({ password: PASSWORD })
      : client.associateHls(CLIENT_KEYS, new Uint8Array(16).fill(0x21));

  test(`GET with-list, ${mode}: results in order, errors per item, blocks when the list response is long`, async () => {
    const model = new BlobModel(8, 300);
    const { client, received, sent } = pair(model, 1);
    await associate(client);
    const small = await client.getWithList([
      { classId: 1, obis: blob(1), attributeId: 1 },
      { classId: 1, obis: parseObis("0.0.96.129.0.255"), attributeId: 2 },
      { classId: 3, obis: blob(2), attributeId: 2 },
    ]);
    assert.deepEqual(small, [
      { data: { type: "octet-string", value: Uint8Array.from(blob(1)) } },
      { error: 4 },
      { error: 4 },
    ]);
    // 8 × 300-byte values do not fit a 1024-byte PDU: the result list comes as datablocks.
    const before = received.length;
    const big = await client.getWithList(
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ classId: 1, obis: blob(i), attributeId: 2 })),
    );
    assert.equal(big.length, 8);
    for (const [i, r] of big.entries()) assert.deepEqual(r, { data: octets(300, i) });
    assert.ok(received.length - before >= 3, "several exchanges: GET with-list then GET next");
    if (mode === "plain (LLS)") {
      const kinds = received.slice(before).map((a) => decodeApdu(a).kind);
      assert.ok(
        kinds.every((k) => k === "get-response-with-datablock"),
        kinds.join(),
      );
      assert.ok(received.every((a) => a.length <= 1024));
    } else {
      assert.ok(
        sent.slice(1).every((a) => a[0] === 0xc8 || a[0] === 0xcb),
        "every request glo-ciphered",
      );
      assert.ok(received.slice(1).every((a) => a.length <= 1024 && (a[0] === 0xcc || a[0] === 0xcf)));
    }
  });

  test(`GET with-list, ${mode}: a list too long for one request is split into requests that fit`, async () => {
    const model = new BlobModel(1, 4);
    const { client, sent } = pair(model, 1);
    await associate(client);
    const items = Array.from({ length: 150 }, () => ({ classId: 1, obis: blob(0), attributeId: 1 }));
    const results = await client.getWithList(items);
    assert.equal(results.length, 150);
    assert.ok(results.every((r) => "data" in r));
    const requests = sent.slice(mode === "plain (LLS)" ? 1 : 2);
    assert.ok(requests.length >= 2, `${requests.length} requests`);
    assert.ok(requests.every((r) => r.length <= 1024));
  });

  test(`SET with datablocks, ${mode}: a value larger than the PDU is written in blocks and read back`, async () => {
    const model = new BlobModel(2, 10);
    const { client, sent, received } = pair(model, 1);
    await associate(client);
    const value = octets(5000, 0xa5);
    const before = sent.length;
    await client.set(1, blob(1), 2, value);
    assert.deepEqual(model.blobs.get("0.0.96.128.1.255"), value);
    assert.equal(model.writes, 1);
    const requests = sent.length - before;
    assert.ok(requests >= 6, `${requests} blocks for 5000 bytes in 1024-byte PDUs`);
    assert.ok(sent.slice(before).every((a) => a.length <= 1024));
    if (mode === "plain (LLS)") {
      const kinds = sent.slice(before).map((a) => decodeApdu(a).kind);
      assert.equal(kinds[0], "set-request-with-first-datablock");
      assert.ok(kinds.slice(1).every((k) => k === "set-request-with-datablock"));
      const answers = received.slice(before).map((a) => decodeApdu(a).kind);
      assert.equal(answers.at(-1), "set-response-last-datablock");
      assert.ok(answers.slice(0, -1).every((k) => k === "set-response-datablock"));
    }
    assert.deepEqual(await client.get(1, blob(1), 2), value);
    // A small value still goes as SET normal; a refused block SET surfaces the data-access-result.
    await client.set(1, blob(0), 2, octets(4, 1));
    await assert.rejects(client.set(1, blob(0), 2, { type: "visible-string", value: "x".repeat(3000) }), {
      code: "DATA_ACCESS_ERROR",
      message: /type-unmatched/,
    });
    await assert.rejects(client.set(1, parseObis("0.0.96.129.0.255"), 2, octets(3000, 0)), {
      code: "OBJECT_UNDEFINED",
    });
  });
}

test("SET datablock protocol errors answer set-response-last-datablock with the data-access-result", async () => {
  const plain = new DlmsServerSession(new BlobModel(1, 4), { lowLevelPassword: PASSWORD }, 1);
  await new DlmsClient(async (r) => plain.handle(r) ?? new Uint8Array(0)).associate({ password: PASSWORD });
  {
    const ask = (apdu: Parameters<typeof encodeApdu>[0]) => decodeApdu(plain.handle(encodeApdu(apdu))!);
    const attribute = { classId: 1, obis: blob(0), attributeId: 2 };
    // A datablock with no transfer in progress: no-long-set-in-progress (18).
    assert.deepEqual(
      ask({
        kind: "set-request-with-datablock",
        invokeId: 0xc1,
        lastBlock: false,
        blockNumber: 2,
        rawData: Uint8Array.of(1),
      }),
      { kind: "set-response-last-datablock", invokeId: 0xc1, result: 18, blockNumber: 2 },
    );
    // A first block numbered 2: data-block-number-invalid (19).
    const first = (blockNumber: number, lastBlock = false) =>
      ask({
        kind: "set-request-with-first-datablock",
        invokeId: 0xc2,
        attribute,
        accessSelection: null,
        lastBlock,
        blockNumber,
        rawData: Uint8Array.of(0x09, 0x04),
      });
    assert.deepEqual(first(2), {
      kind: "set-response-last-datablock",
      invokeId: 0xc2,
      result: 19,
      blockNumber: 2,
    });
    // A skipped block aborts the transfer with 19; the next block then finds nothing in progress (18).
    assert.deepEqual(first(1), { kind: "set-response-datablock", invokeId: 0xc2, blockNumber: 1 });
    const block = (blockNumber: number, lastBlock: boolean, rawData: Uint8Array) =>
      ask({ kind: "set-request-with-datablock", invokeId: 0xc2, lastBlock, blockNumber, rawData });
    assert.deepEqual(block(3, true, Uint8Array.of(1, 2, 3, 4)), {
      kind: "set-response-last-datablock",
      invokeId: 0xc2,
      result: 19,
      blockNumber: 3,
    });
    assert.deepEqual(block(2, true, Uint8Array.of(1, 2, 3, 4)), {
      kind: "set-response-last-datablock",
      invokeId: 0xc2,
      result: 18,
      blockNumber: 2,
    });
    // In order, the value is written; with a wrong A-XDR value: type-unmatched (12).
    first(1);
    assert.deepEqual(block(2, true, Uint8Array.of(1, 2, 3, 4)), {
      kind: "set-response-last-datablock",
      invokeId: 0xc2,
      result: 0,
      blockNumber: 2,
    });
    first(1);
    assert.deepEqual(block(2, true, Uint8Array.of(1, 2)), {
      kind: "set-response-last-datablock",
      invokeId: 0xc2,
      result: 12,
      blockNumber: 2,
    });
    // More than SET_BLOCK_BYTES_MAX: long-set-aborted (17), nothing written.
    first(1);
    let answer: ReturnType<typeof ask> | null = null;
    for (let n = 2; n < 200 && answer?.kind !== "set-response-last-datablock"; n++)
      answer = block(n, false, new Uint8Array(900));
    assert.equal(answer?.kind, "set-response-last-datablock");
    assert.equal((answer as { result: number }).result, 17);
    assert.ok(SET_BLOCK_BYTES_MAX / 900 < 200);
  }
});

test("GET next errors: no block transfer in progress (16), a wrong block number aborts (19)", async () => {
  const session = new DlmsServerSession(new BlobModel(1, 3000), { lowLevelPassword: PASSWORD }, 1);
  await new DlmsClient(async (r) => session.handle(r) ?? new Uint8Array(0)).associate({ password: PASSWORD });
  const ask = (apdu: Parameters<typeof encodeApdu>[0]) => decodeApdu(session.handle(encodeApdu(apdu))!);
  assert.deepEqual(ask({ kind: "get-request-next", invokeId: 0xc1, blockNumber: 1 }), {
    kind: "get-response-with-datablock",
    invokeId: 0xc1,
    lastBlock: true,
    blockNumber: 1,
    result: { error: 16 },
  });
  const first = ask({
    kind: "get-request-normal",
    invokeId: 0xc2,
    attribute: { classId: 1, obis: blob(0), attributeId: 2 },
    accessSelection: null,
  });
  assert.equal(first.kind, "get-response-with-datablock");
  assert.deepEqual(ask({ kind: "get-request-next", invokeId: 0xc2, blockNumber: 5 }), {
    kind: "get-response-with-datablock",
    invokeId: 0xc2,
    lastBlock: true,
    blockNumber: 5,
    result: { error: 19 },
  });
  assert.deepEqual(
    ask({ kind: "get-request-next", invokeId: 0xc2, blockNumber: 1 }).kind,
    "get-response-with-datablock",
  );
});

test("exception-response codes for every refused service path, and the client's typed errors", async () => {
  const model = new BlobModel(1, 4);
  const plain = new DlmsServerSession(model, { lowLevelPassword: PASSWORD }, 1);
  const exceptionOf = (bytes: Uint8Array) => decodeApdu(plain.handle(bytes)!);
  const getBlob = encodeApdu({
    kind: "get-request-normal",
    invokeId: 0xc1,
    attribute: { classId: 1, obis: blob(0), attributeId: 2 },
    accessSelection: null,
  });
  // Before the association: service-not-allowed / operation-not-possible.
  assert.deepEqual(exceptionOf(getBlob), { kind: "exception-response", stateError: 1, serviceError: 1 });
  const client = new DlmsClient(async (r) => plain.handle(r) ?? new Uint8Array(0));
  await assert.rejects(client.get(1, blob(0), 2), { code: "NOT_ASSOCIATED" });
  await client.associate({ password: PASSWORD });
  // An APDU tag the server does not know: service-unknown / service-not-supported.
  assert.deepEqual(exceptionOf(Uint8Array.of(0xc2, 1, 0xc1)), {
    kind: "exception-response",
    stateError: 2,
    serviceError: 2,
  });
  // A choice of a known service that is not served (ACTION with-first-pblock): service-not-supported.
  assert.deepEqual(exceptionOf(Uint8Array.of(0xc3, 4, 0xc1, 0, 1)), {
    kind: "exception-response",
    stateError: 1,
    serviceError: 2,
  });
  // A malformed request (truncated descriptor): other-reason.
  assert.deepEqual(exceptionOf(Uint8Array.of(0xc0, 1, 0xc1, 0, 1, 0)), {
    kind: "exception-response",
    stateError: 1,
    serviceError: 3,
  });
  // Longer than the negotiated max PDU: pdu-too-long.
  const long = encodeApdu({
    kind: "set-request-normal",
    invokeId: 0xc1,
    attribute: { classId: 1, obis: blob(0), attributeId: 2 },
    value: octets(2000, 0),
  });
  assert.deepEqual(exceptionOf(long), { kind: "exception-response", stateError: 1, serviceError: 4 });
  // The data-access-results of GET / SET normal.
  assert.deepEqual(
    exceptionOf(
      encodeApdu({
        kind: "get-request-normal",
        invokeId: 0xc1,
        attribute: { classId: 1, obis: blob(9), attributeId: 2 },
        accessSelection: null,
      }),
    ),
    {
      kind: "get-response-normal",
      invokeId: 0xc1,
      result: { error: 4 },
    },
  );
  assert.deepEqual(
    exceptionOf(
      encodeApdu({
        kind: "set-request-normal",
        invokeId: 0xc1,
        attribute: { classId: 1, obis: blob(0), attributeId: 2 },
        accessSelection: { selector: 1, parameters: { type: "null-data" } },
        value: octets(2, 0),
      }),
    ),
    { kind: "set-response-normal", invokeId: 0xc1, result: 250 },
  );
  assert.ok(plain.refusals >= 5);

  // Ciphered: a request under the wrong key is deciphering-error (5); a replay is invocation-counter-error
  // (6) carrying the lowest counter still accepted.
  const { session, client: hls, sent } = pair(new BlobModel(1, 4), 1);
  await hls.associateHls(CLIENT_KEYS, new Uint8Array(16).fill(9));
  await hls.get(1, blob(0), 2);
  const replay = sent.at(-1)!;
  const replayed = decodeApdu(session.handle(replay)!);
  assert.equal(replayed.kind, "exception-response");
  assert.equal((replayed as { serviceError: number }).serviceError, 6);
  const expected = (replayed as { invocationCounter?: number }).invocationCounter;
  assert.ok(expected !== undefined && expected > 1, `expected counter ${expected}`);
  assert.equal(session.replaysRefused, 1);
  const tampered = Uint8Array.from(replay);
  tampered[tampered.length - 1]! ^= 1;
  assert.deepEqual(decodeApdu(session.handle(tampered)!), {
    kind: "exception-response",
    stateError: 1,
    serviceError: 5,
  });
  assert.equal(session.securityRefusals, 2);
  // The client turns both into typed errors with the reason.
  const replayingClient = new DlmsClient(async () => session.handle(replay)!);
  await assert.rejects(replayingClient.get(1, blob(0), 2), {
    code: "REPLAYED_INVOCATION_COUNTER",
    message: /expects at least \d+/,
  });
  const badKeyClient = new DlmsClient(async () => session.handle(tampered)!);
  await assert.rejects(badKeyClient.get(1, blob(0), 2), { code: "DECRYPT_FAILED" });
  // The association still works after the refusals.
  assert.deepEqual(await hls.get(1, blob(0), 2), octets(4, 0));
});

test("fuzz: any request bytes on an association get a well-formed response APDU, never a throw", async () => {
  const model = new BlobModel(2, 1500);
  const session = new DlmsServerSession(model, { lowLevelPassword: PASSWORD }, 1);
  await new DlmsClient(async (r) => session.handle(r) ?? new Uint8Array(0)).associate({ password: PASSWORD });
  const prefix = fc.constantFrom(
    [0xc0, 1],
    [0xc0, 2],
    [0xc0, 3],
    [0xc1, 1],
    [0xc1, 2],
    [0xc1, 3],
    [0xc3, 1],
    [0xc3, 2],
    [0xd8],
    [],
  );
  fc.assert(
    fc.property(prefix, fc.uint8Array({ maxLength: 1200 }), (head, tail) => {
      const request = Uint8Array.from([...head, ...tail]);
      if (request.length === 0 || request[0] === 0x60 || request[0] === 0x62) return;
      const answer = session.handle(request);
      assert.ok(answer !== null);
      const apdu = decodeApdu(answer);
      assert.ok(
        [
          "exception-response",
          "get-response-normal",
          "get-response-with-datablock",
          "get-response-with-list",
          "set-response-normal",
          "set-response-datablock",
          "set-response-last-datablock",
          "action-response-normal",
        ].includes(apdu.kind),
        apdu.kind,
      );
    }),
    { numRuns: RUNS * 3 },
  );
  // The session still serves after the storm.
  const client = new DlmsClient(async (r) => session.handle(r) ?? new Uint8Array(0));
  await client.associate({ password: PASSWORD });
  assert.deepEqual(await client.get(1, blob(1), 2), octets(1500, 1));
});

test("over real TCP with HLS-GMAC from key sets: ciphered GET with-list and SET with datablocks", async () => {
  const model = new BlobModel(4, 600);
  const server = await listenDlms(0, model, {
    lowLevelPassword: PASSWORD,
    keySet: METER_KEYS,
    challenge: (n) => new Uint8Array(n).fill(0x3c),
  });
  try {
    const { client, close } = await connectDlms("127.0.0.1", server.port, 1);
    await client.associateHls(CLIENT_KEYS, new Uint8Array(16).fill(0x44));
    const results = await client.getWithList(
      [0, 1, 2, 3].map((i) => ({ classId: 1, obis: blob(i), attributeId: 2 })),
    );
    assert.deepEqual(
      results,
      [0, 1, 2, 3].map((i) => ({ data: octets(600, i) })),
    );
    await client.set(1, blob(2), 2, octets(4000, 0x5a));
    assert.deepEqual(await client.get(1, blob(2), 2), octets(4000, 0x5a));
    // Wrong keys: the association is refused with the reason.
    const wrong = await connectDlms("127.0.0.1", server.port, 1);
    await assert.rejects(
      wrong.client.associateHls(
        { ...CLIENT_KEYS, authenticationKey: new Uint8Array(16) },
        new Uint8Array(16),
      ),
      { code: "ASSOCIATION_REFUSED", message: /wrong password or keys/ },
    );
    wrong.close();
    await client.release();
    close();
  } finally {
    await server.close();
  }
});

test("a meter that grants neither multiple-references nor SET blocks: with-list falls back to GETs, a long SET is refused before sending", async () => {
  const session = new DlmsServerSession(new BlobModel(2, 20), { lowLevelPassword: PASSWORD }, 1);
  const sent: Uint8Array[] = [];
  const client = new DlmsClient(async (request) => {
    sent.push(request);
    const answer = session.handle(request)!;
    if (answer[0] !== 0x61) return answer;
    // A third-party meter's AARE: the same association with a smaller conformance block.
    const aare = decodeAare(answer);
    return encodeAare({
      ...aare,
      conformance:
        aare.conformance & ~(CONFORMANCE.multipleReferences | CONFORMANCE.blockTransferWithSetOrWrite),
    });
  });
  await client.associate({ password: PASSWORD });
  assert.equal((client.negotiatedConformance! & CONFORMANCE.multipleReferences) === 0, true);
  const results = await client.getWithList([
    { classId: 1, obis: blob(0), attributeId: 2 },
    { classId: 1, obis: parseObis("0.0.96.129.0.255"), attributeId: 2 },
    { classId: 1, obis: blob(1), attributeId: 2 },
  ]);
  assert.deepEqual(results, [{ data: octets(20, 0) }, { error: 4 }, { data: octets(20, 1) }]);
  assert.ok(sent.slice(1).every((apdu) => decodeApdu(apdu).kind === "get-request-normal"));
  const before = sent.length;
  await assert.rejects(client.set(1, blob(0), 2, octets(3000, 1)), {
    code: "BAD_LENGTH",
    message: /did not grant block-transfer-with-set/,
  });
  assert.equal(sent.length, before, "nothing sent");
});
