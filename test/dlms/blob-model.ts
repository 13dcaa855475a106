import type { AccessLevel, CosemObjectModel, Data, Obis } from "../../src/dlms/index.ts";
import { formatObis } from "../../src/dlms/index.ts";

// A small COSEM object model for the service and link tests, independent of the meter role.

/** A small model: N "blob" Data objects 0.0.96.128.X.255 (octet-strings), writable by management. */
export class BlobModel implements CosemObjectModel {
  readonly blobs = new Map<string, Data>();
  writes = 0;

  constructor(count: number, bytes: number) {
    for (let i = 0; i < count; i++)
      this.blobs.set(`0.0.96.128.${i}.255`, { type: "octet-string", value: new Uint8Array(bytes).fill(i) });
  }

  get(level: AccessLevel, classId: number, obis: Obis, attributeId: number): Data | number {
    const blob = this.blobs.get(formatObis(obis));
    if (classId !== 1 || blob === undefined) return 4; // object-undefined
    if (attributeId === 1) return { type: "octet-string", value: Uint8Array.from(obis) };
    if (attributeId !== 2) return 4;
    return level === "management" || formatObis(obis) === "0.0.96.128.0.255" ? blob : 3;
  }

  set(level: AccessLevel, classId: number, obis: Obis, attributeId: number, value: Data): number {
    const name = formatObis(obis);
    if (classId !== 1 || attributeId !== 2 || !this.blobs.has(name)) return 4;
    if (level !== "management") return 3;
    if (value.type !== "octet-string") return 12;
    this.blobs.set(name, value);
    this.writes++;
    return 0;
  }

  action(): { result: number } {
    return { result: 4 };
  }
}
