import { bytesEqual } from "./bytes.ts";
import { sha256 } from "./crypto.ts";
import { EvidenceError } from "./errors.ts";

// Merkle trees exactly as RFC 9162 §2.1 defines them, so any Certificate-Transparency-style verifier
// accepts our inclusion and consistency proofs.

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

export function merkleLeafHash(data: Uint8Array): Uint8Array {
  return sha256(LEAF_PREFIX, data);
}

export function merkleNodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE_PREFIX, left, right);
}

/** RFC 9162 §2.1.1: k is the largest power of two smaller than n (n > 1). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** MTH over precomputed leaf hashes, in [start, end). */
function subtreeHash(leafHashes: readonly Uint8Array[], start: number, end: number): Uint8Array {
  const n = end - start;
  if (n === 0) return sha256();
  if (n === 1) return leafHashes[start]!;
  const k = splitPoint(n);
  return merkleNodeHash(subtreeHash(leafHashes, start, start + k), subtreeHash(leafHashes, start + k, end));
}

/** The Merkle Tree Hash of a list of leaves (RFC 9162 §2.1.1). */
export function merkleRoot(leaves: readonly Uint8Array[]): Uint8Array {
  return subtreeHash(leaves.map(merkleLeafHash), 0, leaves.length);
}

export function merkleRootFromLeafHashes(leafHashes: readonly Uint8Array[]): Uint8Array {
  return subtreeHash(leafHashes, 0, leafHashes.length);
}

/** A tree built once, from which proofs are cut (the head-end proves a reading's inclusion in a batch). */
export class MerkleTree {
  private readonly leafHashes: Uint8Array[];

  constructor(leaves: readonly Uint8Array[]) {
    this.leafHashes = leaves.map(merkleLeafHash);
  }

  get size(): number {
    return this.leafHashes.length;
  }

  root(size = this.leafHashes.length): Uint8Array {
    this.checkSize(size);
    return subtreeHash(this.leafHashes, 0, size);
  }

  leafHash(index: number): Uint8Array {
    const hash = this.leafHashes[index];
    if (hash === undefined)
      throw new EvidenceError("BAD_PROOF", `leaf ${index} outside a tree of ${this.size}`);
    return hash;
  }

  /** PATH(m, D[n]) of RFC 9162 §2.1.3.1. */
  inclusionProof(index: number, size = this.leafHashes.length): Uint8Array[] {
    this.checkSize(size);
    if (!Number.isInteger(index) || index < 0 || index >= size) {
      throw new EvidenceError("BAD_PROOF", `leaf ${index} outside a tree of ${size}`);
    }
    const path: Uint8Array[] = [];
    const walk = (m: number, start: number, end: number): void => {
      const n = end - start;
      if (n <= 1) return;
      const k = splitPoint(n);
      if (m < k) {
        walk(m, start, start + k);
        path.push(subtreeHash(this.leafHashes, start + k, end));
      } else {
        walk(m - k, start + k, end);
        path.push(subtreeHash(this.leafHashes, start, start + k));
      }
    };
    walk(index, 0, size);
    return path;
  }

  /** PROOF(m, D[n]) of RFC 9162 §2.1.4.1: the tree of `first` leaves is a prefix of the tree of `second`. */
  consistencyProof(first: number, second = this.leafHashes.length): Uint8Array[] {
    this.checkSize(second);
    if (!Number.isInteger(first) || first < 0 || first > second) {
      throw new EvidenceError("BAD_PROOF", `cannot prove ${first} consistent with ${second}`);
    }
    if (first === 0 || first === second) return [];
    const proof: Uint8Array[] = [];
    const sub = (m: number, start: number, end: number, complete: boolean): void => {
      const n = end - start;
      if (m === n) {
        if (!complete) proof.push(subtreeHash(this.leafHashes, start, end));
        return;
      }
      const k = splitPoint(n);
      if (m <= k) {
        sub(m, start, start + k, complete);
        proof.push(subtreeHash(this.leafHashes, start + k, end));
      } else {
        sub(m - k, start + k, end, false);
        proof.push(subtreeHash(this.leafHashes, start, start + k));
      }
    };
    sub(first, 0, second, true);
    return proof;
  }

  private checkSize(size: number): void {
    if (!Number.isInteger(size) || size < 0 || size > this.leafHashes.length) {
      throw new EvidenceError("BAD_PROOF", `tree size ${size} outside 0..${this.leafHashes.length}`);
    }
  }
}

/** RFC 9162 §2.1.3.2: verifies an inclusion proof; false on any mismatch, never throws. */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafHash: Uint8Array,
  path: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (
    !Number.isSafeInteger(leafIndex) ||
    !Number.isSafeInteger(treeSize) ||
    leafIndex < 0 ||
    leafIndex >= treeSize
  ) {
    return false;
  }
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = merkleNodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = merkleNodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(r, root);
}

/** RFC 9162 §2.1.4.2: verifies a consistency proof between two tree heads; never throws. */
export function verifyConsistency(
  first: number,
  second: number,
  firstHash: Uint8Array,
  secondHash: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 0 || first > second)
    return false;
  if (first === second) return proof.length === 0 && bytesEqual(firstHash, secondHash);
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = [...proof];
  if ((first & (first - 1)) === 0) path.unshift(firstHash);
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = merkleNodeHash(c, fr);
      sr = merkleNodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = merkleNodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(fr, firstHash) && bytesEqual(sr, secondHash);
}
