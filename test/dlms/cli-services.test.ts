import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { listenDlms, serveHdlc, serverAddress } from "../../src/dlms/index.ts";
import { BlobModel } from "./blob-model.ts";

// `amiproof dlms get` with several OBIS codes (one GET with-list) over the wrapper, and over HDLC through
// a TCP serial bridge (--hdlc), against servers running in this process.

const BIN = join(import.meta.dirname, "../../bin/amiproof.js");
const PASSWORD = new TextEncoder().encode("12345678");

function runCli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, "dlms", ...args]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

test("amiproof dlms get with several OBIS codes reads them in one GET with-list; a refused one exits 1", async () => {
  const server = await listenDlms(0, new BlobModel(3, 5), { lowLevelPassword: PASSWORD });
  try {
    const target = `127.0.0.1:${server.port}`;
    const ok = await runCli([
      "get",
      target,
      "0.0.96.128.1.255",
      "0.0.96.128.2.255:1",
      "--client",
      "1",
      "--password",
      "12345678",
      "--json",
    ]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), [
      { obis: "0.0.96.128.1.255", class_id: 1, attribute_id: 2, value: { "octet-string": "0101010101" } },
      {
        obis: "0.0.96.128.2.255",
        class_id: 1,
        attribute_id: 1,
        value: { "octet-string": "0000608002ff", obis: "0.0.96.128.2.255" },
      },
    ]);
    const partly = await runCli(["get", target, "0.0.96.128.0.255", "0.0.96.128.1.255"]);
    assert.equal(partly.status, 1);
    assert.match(partly.stdout, /0\.0\.96\.128\.0\.255 class 1 attribute 2: \{"octet-string":"0000000000"\}/);
    assert.match(partly.stdout, /0\.0\.96\.128\.1\.255 class 1 attribute 2: read-write-denied/);
  } finally {
    await server.close();
  }
});

test("amiproof dlms get --hdlc talks HDLC through a TCP serial bridge (SNRM, I frames, DISC)", async () => {
  const model = new BlobModel(2, 400);
  const sockets: Socket[] = [];
  const servings: Array<ReturnType<typeof serveHdlc>> = [];
  const bridge = createServer((socket) => {
    sockets.push(socket);
    servings.push(
      serveHdlc(
        socket,
        model,
        { lowLevelPassword: PASSWORD },
        { serverAddress: serverAddress(1, 17, 2), serverAddressBytes: 2 },
      ),
    );
  });
  await new Promise<void>((resolve) => bridge.listen(0, "127.0.0.1", resolve));
  const target = `127.0.0.1:${(bridge.address() as { port: number }).port}`;
  try {
    const list = await runCli([
      "get",
      target,
      "0.0.96.128.0.255",
      "0.0.96.128.1.255",
      "--hdlc",
      "1/17",
      "--client",
      "1",
      "--password",
      "12345678",
      "--json",
    ]);
    assert.equal(list.status, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as Array<{ value: { "octet-string": string } }>;
    assert.deepEqual(
      rows.map((row) => row.value["octet-string"]),
      ["00".repeat(400), "01".repeat(400)],
    );
    // The link was closed with DISC; the 800 bytes of results went in segmented I frames.
    assert.equal(servings.length, 1);
    assert.equal(servings[0]!.link.state, "disconnected");
    assert.ok(servings[0]!.link.counters.framesSent > 7);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => bridge.close(resolve));
  }
});
