import assert from "node:assert/strict";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { test } from "node:test";
import {
  connectDlms,
  DlmsClient,
  type DlmsKeySet,
  DlmsServerSession,
  decodeApdu,
  hlsEcdsaResponse,
  listenDlms,
  peerFromCertificate,
  peerSigningKeys,
  verifyHlsEcdsa,
} from "../../src/dlms/index.ts";
import { BlobModel } from "./blob-model.ts";

// Security suite 1, HLS authentication mechanism 7 (ECDSA P-256, SHA-256): signatures over
// own title ‖ peer title ‖ peer challenge ‖ own challenge, keys from X.509 certificates whose subject
// CN is the system title, and the association end to end with the suite-1 security control byte.

// A test head-end certificate and key (openssl, P-256, self-signed, CN = its system title 4845530000000001).
const HES_CERT = `-----BEGIN CERTIFICATE-----
MIIBvDCCAWOgAwIBAgIUdNFG6Bt0GTT2zIsXDHnZYo/K2Z8wCgYIKoZIzj0EAwIw
MzEZMBcGA1UEAwwQNDg0NTUzMDAwMDAwMDAwMTEWMBQGA1UECgwNYW1pcHJvb2Yg
dGVzdDAgFw0yNjEyMDYxNjU1NTJaGA8yMTI2MTExMjE2NTU1MlowMzEZMBcGA1UE
AwwQNDg0NTUzMDAwMDAwMDAwMTEWMBQGA1UECgwNYW1pcHJvb2YgdGVzdDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABALk3TQ34y8LFMPjY2D5XJU2DABZ4UMXydal
DiAUYB1A5VannG7z9ATPTItxqCRPPCSvqn0jyO+JbuHzaISWmHmjUzBRMB0GA1Ud
DgQWBBQ1UhWBBcWU4C4pxhPLH9O4GBCU+TAfBgNVHSMEGDAWgBQ1UhWBBcWU4C4p
xhPLH9O4GBCU+TAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIED4
QO1SEY6VJqTJMZH7Bdh4UsWrNDsVbn6UVLnFMxaQAiAJrIEiOR/KZVa6RsTi1dTo
V17U8r/6kLIW6QpI8ZSm1g==
-----END CERTIFICATE-----`;
const HES_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgXDwA4lQyi0ueJ2E6
AO8FztWIUqoA3zdum90qM8IsRJihRANCAAQC5N00N+MvCxTD42Ng+VyVNgwAWeFD
F8nWpQ4gFGAdQOVWp5xu8/QEz0yLcagkTzwkr6p9I8jviW7h82iElph5
-----END PRIVATE KEY-----`;
const HES_TITLE = Uint8Array.from(Buffer.from("4845530000000001", "hex"));
const METER_TITLE = Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 0x31);
const SYMMETRIC = {
  encryptionKey: Uint8Array.from(Buffer.from("000102030405060708090a0b0c0d0e0f", "hex")),
  authenticationKey: Uint8Array.from(Buffer.from("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf", "hex")),
};
const PASSWORD = new TextEncoder().encode("12345678");
const meterPair = generateKeyPairSync("ec", { namedCurve: "P-256" });

const meterKeys: DlmsKeySet = {
  suite: 1,
  systemTitle: METER_TITLE,
  ...SYMMETRIC,
  asymmetric: { signingKey: meterPair.privateKey, peerSigningKeys: peerSigningKeys([HES_CERT]) },
};
const hesKeys: DlmsKeySet = {
  suite: 1,
  systemTitle: HES_TITLE,
  ...SYMMETRIC,
  asymmetric: {
    signingKey: createPrivateKey(HES_KEY),
    peerSigningKeys: new Map([[Buffer.from(METER_TITLE).toString("hex"), meterPair.publicKey]]),
  },
};

test("X.509: the system title from the subject CN, the P-256 key, validity checked against a given time", () => {
  const peer = peerFromCertificate(HES_CERT);
  assert.deepEqual(peer.systemTitle, HES_TITLE);
  assert.equal(peer.publicKey.asymmetricKeyDetails?.namedCurve, "prime256v1");
  assert.throws(() => peerFromCertificate(HES_CERT, Date.UTC(2020, 0, 1)), {
    code: "AUTH_FAILED",
    message: /outside its validity/,
  });
  assert.ok(peerFromCertificate(HES_CERT, Date.UTC(2030, 0, 1)));
  assert.throws(() => peerFromCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"), {
    code: "BAD_VALUE",
  });
});

test("HLS-ECDSA f(): 64-byte r ‖ s over the two titles and challenges; any other key, title or order fails", () => {
  const stoc = new Uint8Array(32).fill(0xaa);
  const ctos = new Uint8Array(32).fill(0xbb);
  const fStoC = hlsEcdsaResponse(createPrivateKey(HES_KEY), HES_TITLE, METER_TITLE, stoc, ctos);
  assert.equal(fStoC.length, 64);
  const hesPublic = peerFromCertificate(HES_CERT).publicKey;
  verifyHlsEcdsa(hesPublic, HES_TITLE, METER_TITLE, stoc, ctos, fStoC);
  assert.throws(() => verifyHlsEcdsa(meterPair.publicKey, HES_TITLE, METER_TITLE, stoc, ctos, fStoC), {
    code: "AUTH_FAILED",
  });
  assert.throws(() => verifyHlsEcdsa(hesPublic, METER_TITLE, HES_TITLE, stoc, ctos, fStoC), {
    code: "AUTH_FAILED",
  });
  assert.throws(() => verifyHlsEcdsa(hesPublic, HES_TITLE, METER_TITLE, ctos, stoc, fStoC), {
    code: "AUTH_FAILED",
  });
  assert.throws(() => verifyHlsEcdsa(hesPublic, HES_TITLE, METER_TITLE, stoc, ctos, fStoC.subarray(1)), {
    code: "AUTH_FAILED",
  });
});

function inProcess(serverKeys: DlmsKeySet) {
  const session = new DlmsServerSession(
    new BlobModel(1, 8),
    { lowLevelPassword: PASSWORD, keySet: serverKeys, challenge: (n) => new Uint8Array(n).fill(0x5c) },
    1,
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

test("HLS mechanism 7 association: ECDSA both ways, then APDUs glo-ciphered with suite 1 (SC 0x31)", async () => {
  const { client, sent, received } = inProcess(meterKeys);
  await client.associateHls(hesKeys, new Uint8Array(32).fill(0x21));
  assert.deepEqual(await client.get(1, [0, 0, 96, 128, 0, 255], 2), {
    type: "octet-string",
    value: new Uint8Array(8),
  });
  // AARQ mechanism name …02 07, then every request and response carries SC 0x31.
  assert.equal(sent[0]![0], 0x60);
  assert.match(Buffer.from(sent[0]!).toString("hex"), /8b0760857405080207/);
  for (const apdu of [...sent.slice(1), ...received.slice(1)]) {
    const parsed = decodeApdu(apdu);
    assert.equal(parsed.kind, "ciphered-service");
    assert.equal((parsed as { securityControl: number }).securityControl, 0x31);
  }
});

test("HLS mechanism 7 refusals: wrong signing key, unknown certificates, a suite-0 meter", async () => {
  // The client signs with a key that does not match its certificate: the meter refuses f(StoC).
  const impostor = inProcess(meterKeys);
  const otherKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  await assert.rejects(
    impostor.client.associateHls(
      { ...hesKeys, asymmetric: { ...hesKeys.asymmetric!, signingKey: otherKey } },
      new Uint8Array(32).fill(1),
    ),
    { code: "AUTH_FAILED", message: /refused f\(StoC\)/ },
  );
  assert.equal(impostor.session.securityRefusals, 1);
  assert.equal(impostor.session.associated, false);
  // The meter has no certificate for this client's system title: refused in the AARE.
  const unknownClient = inProcess({
    ...meterKeys,
    asymmetric: { ...meterKeys.asymmetric!, peerSigningKeys: new Map() },
  });
  await assert.rejects(unknownClient.client.associateHls(hesKeys, new Uint8Array(32)), {
    code: "ASSOCIATION_REFUSED",
    message: /authentication failure/,
  });
  // The client has no certificate for the meter: it stops before trusting anything.
  const unknownMeter = inProcess(meterKeys);
  await assert.rejects(
    unknownMeter.client.associateHls(
      { ...hesKeys, asymmetric: { ...hesKeys.asymmetric!, peerSigningKeys: new Map() } },
      new Uint8Array(32),
    ),
    { code: "AUTH_FAILED", message: /no certificate for the meter's system title 414d500000000031/ },
  );
  // A suite-0 meter does not offer mechanism 7.
  const { asymmetric: _none, ...symmetricOnly } = meterKeys;
  const suite0 = inProcess({ ...symmetricOnly, suite: 0 });
  await assert.rejects(suite0.client.associateHls(hesKeys, new Uint8Array(32)), {
    code: "ASSOCIATION_REFUSED",
    message: /mechanism name not recognised/,
  });
  // A challenge shorter than 32 bytes is refused for mechanism 7.
  await assert.rejects(inProcess(meterKeys).client.associateHls(hesKeys, new Uint8Array(16)), {
    code: "ASSOCIATION_REFUSED",
  });
});

test("over real TCP: HLS mechanism 7 association and ciphered GET", async () => {
  const server = await listenDlms(0, new BlobModel(2, 300), {
    lowLevelPassword: PASSWORD,
    keySet: meterKeys,
  });
  try {
    const { client, close } = await connectDlms("127.0.0.1", server.port, 1);
    await client.associateHls(hesKeys, new Uint8Array(48).fill(0x42));
    assert.deepEqual(await client.get(1, [0, 0, 96, 128, 1, 255], 2), {
      type: "octet-string",
      value: new Uint8Array(300).fill(1),
    });
    await client.release();
    close();
  } finally {
    await server.close();
  }
});
