import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import {
  FileNvm,
  isEvidenceError,
  MemoryNvm,
  type NvmDevice,
  type NvmGeometry,
  SeededRandom,
} from "../../src/evidence/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 200);
const GEOMETRY: NvmGeometry = { sizeBytes: 4 * 1024, pageBytes: 64, sectorBytes: 1024 };

const throwsCode = (fn: () => unknown, code: string) =>
  assert.throws(fn, (error: unknown) => isEvidenceError(error) && error.code === code);

test("a fresh device reads erased (0xFF) and program only clears bits", () => {
  const nvm = new MemoryNvm(GEOMETRY);
  assert.ok(nvm.read(0, GEOMETRY.sizeBytes).every((b) => b === 0xff));
  nvm.program(10, Uint8Array.of(0xf0, 0x0f, 0x00));
  assert.deepEqual([...nvm.read(9, 5)], [0xff, 0xf0, 0x0f, 0x00, 0xff]);
  nvm.program(10, Uint8Array.of(0x30)); // 0xF0 → 0x30 only clears bits: allowed
  assert.equal(nvm.read(10, 1)[0], 0x30);
  throwsCode(() => nvm.program(11, Uint8Array.of(0xff, 0x00)), "NVM_PROGRAM"); // 0x0F → 0xFF sets bits
  assert.equal(nvm.read(12, 1)[0], 0x00, "a refused program writes nothing");
  nvm.eraseSector(0);
  assert.ok(nvm.read(0, GEOMETRY.sectorBytes).every((b) => b === 0xff));
  const wear = nvm.wear();
  assert.deepEqual(wear.sectorErases, [1, 0, 0, 0]);
  assert.equal(wear.pagePrograms, 2);
  assert.equal(wear.bytesProgrammed, 4);
});

test("ranges, page boundaries and geometry are checked with NVM_RANGE", () => {
  const nvm = new MemoryNvm(GEOMETRY);
  throwsCode(() => nvm.read(GEOMETRY.sizeBytes - 1, 2), "NVM_RANGE");
  throwsCode(() => nvm.read(-1, 1), "NVM_RANGE");
  throwsCode(() => nvm.program(60, new Uint8Array(8)), "NVM_RANGE"); // bytes 60..67 cross the 64-byte page
  nvm.program(56, new Uint8Array(8)); // 56..63 stays inside page 0
  throwsCode(() => nvm.eraseSector(4), "NVM_RANGE");
  throwsCode(() => new MemoryNvm({ sizeBytes: 4096, pageBytes: 100, sectorBytes: 1024 }), "NVM_RANGE");
  throwsCode(() => new MemoryNvm({ sizeBytes: 4000, pageBytes: 64, sectorBytes: 1024 }), "NVM_RANGE");
});

test("a cut after N programmed bytes tears the page write at byte N and powers the device off", () => {
  const nvm = new MemoryNvm(GEOMETRY, { rng: new SeededRandom(1) });
  nvm.program(0, new Uint8Array(10).fill(0xaa)); // before arming: not counted
  nvm.armPowerCut({ afterBytes: 20 });
  nvm.program(64, new Uint8Array(8).fill(0x00)); // 8 of 20
  throwsCode(() => nvm.program(128, new Uint8Array(40).fill(0x00)), "POWER_LOST");
  const page = nvm.image().subarray(128, 168);
  assert.ok(
    page.subarray(0, 12).every((b) => b === 0x00),
    "the 12 bytes before the cut landed",
  );
  assert.ok(
    page.subarray(13).every((b) => b === 0xff),
    "nothing after the torn byte landed",
  );
  assert.equal(nvm.powered, false);
  throwsCode(() => nvm.read(0, 1), "POWER_LOST");
  throwsCode(() => nvm.program(0, Uint8Array.of(0)), "POWER_LOST");
  throwsCode(() => nvm.eraseSector(0), "POWER_LOST");
  throwsCode(() => nvm.sync(), "POWER_LOST");
  nvm.powerOn();
  assert.equal(nvm.read(128, 1)[0], 0x00);
  assert.equal(nvm.faultStats().powerCuts, 1);
  nvm.program(256, new Uint8Array(64)); // the plan is gone after the cut
});

test("the torn byte keeps only some of the bits it was clearing; without noise it stays untouched", () => {
  for (let seed = 0; seed < 50; seed++) {
    const nvm = new MemoryNvm(GEOMETRY, { rng: new SeededRandom(seed) });
    nvm.armPowerCut({ afterBytes: 3 });
    throwsCode(() => nvm.program(0, Uint8Array.of(0x12, 0x34, 0x56, 0x0f, 0x9a)), "POWER_LOST");
    nvm.powerOn();
    const [a, b, c, torn, after] = nvm.read(0, 5);
    assert.deepEqual([a, b, c, after], [0x12, 0x34, 0x56, 0xff]);
    assert.equal(torn! & 0x0f, 0x0f, "a torn byte lies between 0xFF and the value being programmed");
  }
  const quiet = new MemoryNvm(GEOMETRY, { rng: new SeededRandom(3) });
  quiet.armPowerCut({ afterBytes: 1, tornByteNoise: false });
  throwsCode(() => quiet.program(0, Uint8Array.of(0, 0, 0)), "POWER_LOST");
  quiet.powerOn();
  assert.deepEqual([...quiet.read(0, 3)], [0x00, 0xff, 0xff]);
});

test("a cut after N operations lands a prefix of a program or leaves an erase half done", () => {
  let sawPartialErase = false;
  for (let seed = 0; seed < 40; seed++) {
    const nvm = new MemoryNvm(GEOMETRY, { rng: new SeededRandom(seed) });
    for (let page = 0; page < 16; page++) nvm.program(1024 + page * 64, new Uint8Array(64).fill(0x00));
    nvm.armPowerCut({ afterOps: 1 });
    nvm.program(0, Uint8Array.of(0x00)); // op 1 completes
    throwsCode(() => nvm.eraseSector(1), "POWER_LOST"); // op 2 is cut
    nvm.powerOn();
    const sector = nvm.read(1024, 1024);
    const erased = sector.filter((b) => b === 0xff).length;
    if (erased > 0 && erased < sector.length) sawPartialErase = true;
    assert.equal(nvm.wear().sectorErases[1], 1, "a started erase still wears the sector");
    assert.ok(
      nvm.read(2048, 2048).every((b) => b === 0xff),
      "neighbouring sectors are untouched",
    );

    nvm.armPowerCut({ afterOps: 0 });
    throwsCode(() => nvm.program(2048, new Uint8Array(64).fill(0x00)), "POWER_LOST");
    nvm.powerOn();
    const landed = nvm.read(2048, 64).filter((b) => b === 0x00).length;
    assert.ok(landed < 64, "a cut program never completes");
  }
  assert.ok(sawPartialErase, "some cut erase leaves a mix of erased and old bytes");
});

test("ghost bit flips are transient, seeded, and roughly at the configured rate", () => {
  const make = () => new MemoryNvm(GEOMETRY, { rng: new SeededRandom(42), readBitFlipRate: 0.001 });
  const a = make();
  const b = make();
  let flipped = 0;
  for (let i = 0; i < 100; i++) {
    const readA = a.read(0, GEOMETRY.sizeBytes);
    assert.deepEqual(readA, b.read(0, GEOMETRY.sizeBytes), "same seed, same flips");
    for (const byte of readA) flipped += 8 - popcount(byte);
  }
  const bits = 100 * GEOMETRY.sizeBytes * 8;
  assert.equal(a.faultStats().readBitFlips, flipped);
  assert.ok(flipped > bits * 0.0007 && flipped < bits * 0.0013, `${flipped} flips in ${bits} bits`);
  a.setReadBitFlipRate(0);
  assert.ok(
    a.read(0, GEOMETRY.sizeBytes).every((x) => x === 0xff),
    "flips never reach the cells",
  );
  assert.throws(() => new MemoryNvm(GEOMETRY, { readBitFlipRate: 0.1 }), RangeError);
});

test("tamper overwrites raw cells regardless of NOR rules and power", () => {
  const nvm = new MemoryNvm(GEOMETRY);
  nvm.program(0, Uint8Array.of(0x00));
  nvm.powerOff();
  nvm.tamper(0, Uint8Array.of(0xff, 0x12));
  nvm.powerOn();
  assert.deepEqual([...nvm.read(0, 2)], [0xff, 0x12]);
  assert.equal(nvm.wear().bytesProgrammed, 1);
});

test("FileNvm keeps NOR semantics on a file and survives reopening", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-nvm-"));
  try {
    const path = join(dir, "flash.bin");
    const nvm = FileNvm.open(path, GEOMETRY);
    assert.equal(statSync(path).size, GEOMETRY.sizeBytes);
    assert.ok(nvm.read(0, GEOMETRY.sizeBytes).every((b) => b === 0xff));
    nvm.program(100, Uint8Array.of(0x0f, 0x00));
    throwsCode(() => nvm.program(100, Uint8Array.of(0xf0)), "NVM_PROGRAM");
    throwsCode(() => nvm.program(120, new Uint8Array(16)), "NVM_RANGE");
    nvm.sync();
    nvm.eraseSector(3);
    assert.deepEqual(nvm.wear().sectorErases, [0, 0, 0, 1]);
    assert.equal(nvm.wear().syncs, 1);
    nvm.close();
    throwsCode(() => nvm.read(0, 1), "IO");
    const again = FileNvm.open(path, GEOMETRY);
    assert.deepEqual([...again.read(99, 4)], [0xff, 0x0f, 0x00, 0xff]);
    again.close();
    throwsCode(() => FileNvm.open(path, { ...GEOMETRY, sizeBytes: 8192 }), "NVM_RANGE");
    writeFileSync(join(dir, "short.bin"), new Uint8Array(10));
    throwsCode(() => FileNvm.open(join(dir, "short.bin"), GEOMETRY), "NVM_RANGE");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

type Op =
  | { kind: "program"; offset: number; data: number[] }
  | { kind: "erase"; sector: number }
  | { kind: "read"; offset: number; length: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc
    .record({
      page: fc.nat(63),
      start: fc.nat(63),
      data: fc.array(fc.nat(255), { minLength: 1, maxLength: 64 }),
    })
    .map(({ page, start, data }) => ({
      kind: "program" as const,
      offset: page * 64 + start,
      data: data.slice(0, 64 - start),
    })),
  fc.nat(3).map((sector) => ({ kind: "erase" as const, sector })),
  fc.record({ offset: fc.nat(4000), length: fc.nat(96) }).map((r) => ({ kind: "read" as const, ...r })),
);

function apply(nvm: NvmDevice, op: Op): string {
  try {
    if (op.kind === "program") nvm.program(op.offset, Uint8Array.from(op.data));
    else if (op.kind === "erase") nvm.eraseSector(op.sector);
    else return Buffer.from(nvm.read(op.offset, op.length)).toString("hex");
    return "ok";
  } catch (error) {
    if (isEvidenceError(error)) return error.code;
    throw error;
  }
}

test("MemoryNvm, FileNvm and a bitwise model agree on any operation sequence", () => {
  const dir = mkdtempSync(join(tmpdir(), "amiproof-nvm-"));
  let run = 0;
  try {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const memory = new MemoryNvm(GEOMETRY);
        const file = FileNvm.open(join(dir, `p${run++}.bin`), GEOMETRY);
        const model = new Uint8Array(GEOMETRY.sizeBytes).fill(0xff);
        try {
          for (const op of ops) {
            let expected = "ok";
            if (op.kind === "program") {
              const end = op.offset + op.data.length;
              const settable = op.data.every((b, i) => (model[op.offset + i]! & b) === b);
              if (end > GEOMETRY.sizeBytes) expected = "NVM_RANGE";
              else if (!settable) expected = "NVM_PROGRAM";
              else model.set(op.data, op.offset);
            } else if (op.kind === "erase") {
              model.fill(0xff, op.sector * 1024, op.sector * 1024 + 1024);
            } else {
              expected =
                op.offset + op.length > GEOMETRY.sizeBytes
                  ? "NVM_RANGE"
                  : Buffer.from(model.subarray(op.offset, op.offset + op.length)).toString("hex");
            }
            assert.equal(apply(memory, op), expected);
            assert.equal(apply(file, op), expected);
          }
          assert.deepEqual(memory.image(), model);
          assert.deepEqual(file.read(0, GEOMETRY.sizeBytes), model);
        } finally {
          file.close();
        }
      }),
      { numRuns: Math.min(RUNS, 100) },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function popcount(byte: number): number {
  let n = 0;
  for (let b = byte; b !== 0; b &= b - 1) n++;
  return n;
}
