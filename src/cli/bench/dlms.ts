// shell: DLMS GET requests per second over loopback TCP, ciphered (HLS-GMAC, suite 0), one client.
import { connectDlms, listenDlms, parseObis } from "../../dlms/index.ts";
import { MemorySecureElement } from "../../evidence/index.ts";
import { Meter, meterObjectModel } from "../../meter/index.ts";
import { type BenchSuite, figure } from "./types.ts";

// Back of the envelope: one GET is two AES-GCM operations per side (~2 µs each for 30 bytes), A-XDR
// encoding and a loopback round trip (~30–50 µs on a shared 2-core machine): the round trip dominates,
// so a single client with one request in flight tops out around 10–20k/s.
const KEYS = {
  encryptionKey: Uint8Array.from(Buffer.from("000102030405060708090a0b0c0d0e0f", "hex")),
  authenticationKey: Uint8Array.from(Buffer.from("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf", "hex")),
};

export const dlmsSuite: BenchSuite = {
  name: "dlms",
  async run(ctx) {
    const minMs = ctx.quick ? 300 : 2_000;
    const t0 = Date.UTC(2026, 0, 1);
    const meter = Meter.open(
      { id: "BENCH-DLMS", secureElement: new MemorySecureElement("BENCH-DLMS"), factoryTimeMs: t0 },
      t0,
    );
    const server = await listenDlms(0, meterObjectModel({ meter, trueNowMs: () => t0 }), {
      lowLevelPassword: new Uint8Array(8),
      hls: { suite: 0, systemTitle: Uint8Array.of(0x41, 0x4d, 0x50, 0, 0, 0, 0, 1), ...KEYS },
    });
    try {
      ctx.progress("dlms: ciphered GET of 1.0.1.8.0.255 over loopback");
      const { client, close } = await connectDlms("127.0.0.1", server.port, 1);
      await client.associateHls(
        { suite: 0, systemTitle: Uint8Array.of(0x42, 0x45, 0x4e, 0x43, 0, 0, 0, 1), ...KEYS },
        new Uint8Array(16).fill(3),
      );
      const obis = parseObis("1.0.1.8.0.255");
      let gets = 0;
      const started = performance.now();
      while (performance.now() - started < minMs) {
        for (let i = 0; i < 50; i++) await client.get(3, obis, 2);
        gets += 50;
      }
      const perS = (gets * 1000) / (performance.now() - started);
      close();
      return [
        figure(
          "dlms.get_per_s",
          perS,
          "GET/s (HLS-GMAC ciphered, loopback, 1 client)",
          null,
          ">= 5000 per core",
        ),
      ];
    } finally {
      await server.close();
    }
  },
};
