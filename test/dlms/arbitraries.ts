// fast-check generators for DLMS values, shared by the property tests of test/dlms.
import fc from "fast-check";
import type { CosemDateTime, Data, TypeDescription } from "../../src/dlms/index.ts";

const field = (max: number) => fc.option(fc.integer({ min: 0, max }), { nil: null });

export const dateTimeArb: fc.Arbitrary<CosemDateTime> = fc.record(
  {
    year: field(0xfffe),
    month: field(0xfe),
    day: field(0xfe),
    dayOfWeek: field(0xfe),
    hour: field(0xfe),
    minute: field(0xfe),
    second: field(0xfe),
    hundredths: field(0xfe),
    deviation: fc.option(fc.integer({ min: -0x7fff, max: 0x7fff }), { nil: null }),
    clockStatus: field(0xfe),
  },
  { noNullPrototype: true },
);

/** Simple (non-container) values whose type is `type`. */
function simpleOf(type: TypeDescription["type"]): fc.Arbitrary<Data> {
  switch (type) {
    case "null-data":
      return fc.constant({ type: "null-data" });
    case "dont-care":
      return fc.constant({ type: "dont-care" });
    case "boolean":
      return fc.boolean().map((value) => ({ type, value }));
    case "bit-string":
      return fc
        .integer({ min: 0, max: 200 })
        .chain((bits) =>
          fc
            .uint8Array({ minLength: Math.ceil(bits / 8), maxLength: Math.ceil(bits / 8) })
            .map((value) => ({ type: "bit-string" as const, bits, value })),
        );
    case "double-long":
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((value) => ({ type, value }));
    case "double-long-unsigned":
      return fc.integer({ min: 0, max: 2 ** 32 - 1 }).map((value) => ({ type, value }));
    case "octet-string":
      return fc.uint8Array({ maxLength: 300 }).map((value) => ({ type, value }));
    case "visible-string":
      return fc
        .uint8Array({ maxLength: 40 })
        .map((b) => ({ type, value: Buffer.from(b).toString("latin1") }));
    case "utf8-string":
      // Any Unicode scalar value (1- to 4-byte UTF-8). Built from code points: fast-check's "binary"
      // string unit costs seconds of set-up per process.
      return fc
        .array(fc.oneof(fc.integer({ min: 0, max: 0xd7ff }), fc.integer({ min: 0xe000, max: 0x10ffff })), {
          maxLength: 30,
        })
        .map((codePoints) => ({ type, value: String.fromCodePoint(...codePoints) }));
    case "bcd":
    case "unsigned":
    case "enum":
      return fc.integer({ min: 0, max: 255 }).map((value) => ({ type, value }));
    case "integer":
      return fc.integer({ min: -128, max: 127 }).map((value) => ({ type, value }));
    case "long":
      return fc.integer({ min: -32768, max: 32767 }).map((value) => ({ type, value }));
    case "long-unsigned":
      return fc.integer({ min: 0, max: 0xffff }).map((value) => ({ type, value }));
    case "long64":
      return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((value) => ({ type, value }));
    case "long64-unsigned":
      return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((value) => ({ type, value }));
    case "float32":
      return fc.float({ noNaN: true }).map((value) => ({ type, value }));
    case "float64":
      return fc.double({ noNaN: true }).map((value) => ({ type, value }));
    case "date-time":
      return dateTimeArb.map((value) => ({ type, value }));
    case "date":
      return dateTimeArb.map(({ year, month, day, dayOfWeek }) => ({
        type,
        value: { year, month, day, dayOfWeek },
      }));
    case "time":
      return dateTimeArb.map(({ hour, minute, second, hundredths }) => ({
        type,
        value: { hour, minute, second, hundredths },
      }));
    default:
      throw new Error(`not a simple type: ${type}`);
  }
}

const SIMPLE_TYPES = [
  "null-data",
  "boolean",
  "bit-string",
  "double-long",
  "double-long-unsigned",
  "octet-string",
  "visible-string",
  "utf8-string",
  "bcd",
  "integer",
  "long",
  "unsigned",
  "long-unsigned",
  "long64",
  "long64-unsigned",
  "enum",
  "float32",
  "float64",
  "date-time",
  "date",
  "time",
  "dont-care",
] as const;

export const simpleDataArb: fc.Arbitrary<Data> = fc.constantFrom(...SIMPLE_TYPES).chain(simpleOf);

/** Type descriptions whose elements are never zero bytes long (a compact-array must make progress). */
const descriptionArb: fc.Arbitrary<TypeDescription> = fc.letrec<{ d: TypeDescription }>((tie) => ({
  d: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc
      .constantFrom(...SIMPLE_TYPES.filter((t) => t !== "null-data" && t !== "dont-care"))
      .map((type) => ({ type }) as TypeDescription),
    fc.record(
      { type: fc.constant("array" as const), count: fc.integer({ min: 1, max: 3 }), element: tie("d") },
      { noNullPrototype: true },
    ),
    fc.record(
      {
        type: fc.constant("structure" as const),
        elements: fc.array(tie("d"), { minLength: 1, maxLength: 3 }),
      },
      { noNullPrototype: true },
    ),
  ),
})).d;

function describedArb(d: TypeDescription): fc.Arbitrary<Data> {
  if (d.type === "array") {
    return fc
      .array(describedArb(d.element), { minLength: d.count, maxLength: d.count })
      .map((value) => ({ type: "array", value }));
  }
  if (d.type === "structure") {
    return fc.tuple(...d.elements.map(describedArb)).map((value) => ({ type: "structure", value }));
  }
  return simpleOf(d.type);
}

export const compactArrayArb: fc.Arbitrary<Data> = descriptionArb.chain((description) =>
  fc
    .array(describedArb(description), { maxLength: 4 })
    .map((value) => ({ type: "compact-array" as const, description, value })),
);

export const dataArb: fc.Arbitrary<Data> = fc.letrec<{ data: Data }>((tie) => ({
  data: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    simpleDataArb,
    fc.array(tie("data"), { maxLength: 4 }).map((value) => ({ type: "array" as const, value })),
    fc.array(tie("data"), { maxLength: 4 }).map((value) => ({ type: "structure" as const, value })),
    compactArrayArb,
  ),
})).data;
