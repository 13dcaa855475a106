import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  MerkleTree,
  merkleLeafHash,
  merkleNodeHash,
  merkleRoot,
  sha256,
  toHex,
  verifyConsistency,
  verifyInclusion,
} from "../../src/evidence/index.ts";

const RUNS = Number(process.env.AMIPROOF_FUZZ_RUNS ?? 200);
const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

// Source: the Certificate Transparency reference test data (RFC 6962/9162 trees; Google's
// certificate-transparency merkle_tree_test "kInputs"/"kSHA256Roots"), the vector set every CT verifier uses.
const CT_LEAVES = [
  "",
  "00",
  "10",
  "2021",
  "3031",
  "40414243",
  "5051525354555657",
  "606162636465666768696a6b6c6d6e6f",
].map(hex);
const CT_ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

test("RFC 9162 tree heads match the Certificate Transparency reference roots", () => {
  assert.equal(toHex(merkleRoot([])), toHex(sha256()));
  for (let n = 1; n <= CT_LEAVES.length; n++) {
    assert.equal(toHex(merkleRoot(CT_LEAVES.slice(0, n))), CT_ROOTS[n - 1], `root of ${n} leaves`);
  }
});

test("leaf and node hashes are domain-separated (0x00 / 0x01 prefixes)", () => {
  const data = hex("abcd");
  assert.equal(toHex(merkleLeafHash(data)), toHex(sha256(Uint8Array.of(0), data)));
  assert.equal(toHex(merkleNodeHash(data, data)), toHex(sha256(Uint8Array.of(1), data, data)));
  // A two-leaf tree is node(leaf0, leaf1), never SHA-256 of the raw concatenation.
  assert.equal(
    toHex(merkleRoot([hex("01"), hex("02")])),
    toHex(merkleNodeHash(merkleLeafHash(hex("01")), merkleLeafHash(hex("02")))),
  );
});

// Source: the same CT test data, inclusion path for leaf 0 of the 8-leaf tree (first and last entries).
test("inclusion proof of leaf 0 in the 8-leaf CT tree starts and ends as published", () => {
  const tree = new MerkleTree(CT_LEAVES);
  const path = tree.inclusionProof(0, 8);
  assert.equal(path.length, 3);
  assert.equal(toHex(path[0]!), "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7");
  assert.equal(toHex(path[2]!), "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4");
});

test("every inclusion and consistency proof verifies, up to 40 leaves", () => {
  const leaves = Array.from({ length: 40 }, (_, i) => Uint8Array.of(i, i * 3));
  const tree = new MerkleTree(leaves);
  for (let n = 1; n <= leaves.length; n++) {
    const root = tree.root(n);
    for (let m = 0; m < n; m++) {
      assert.ok(verifyInclusion(m, n, tree.leafHash(m), tree.inclusionProof(m, n), root), `incl ${m}/${n}`);
    }
    for (let m = 0; m <= n; m++) {
      const proof = tree.consistencyProof(m, n);
      assert.ok(verifyConsistency(m, n, tree.root(m), root, proof), `cons ${m}/${n}`);
    }
  }
});

test("tampered proofs, roots, indices and sizes are rejected", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 64 }),
      fc.nat(),
      fc.nat(),
      fc.nat(),
      (n, mSeed, flipSeed, bitSeed) => {
        const leaves = Array.from({ length: n }, (_, i) => Uint8Array.of(i));
        const tree = new MerkleTree(leaves);
        const m = mSeed % n;
        const root = tree.root();
        const path = tree.inclusionProof(m);
        const leafHash = tree.leafHash(m);
        assert.ok(verifyInclusion(m, n, leafHash, path, root));
        // (A wrong tree size can still verify when the path shape is the same: the size is authenticated
        // by the signed batch header, not by the proof.)
        assert.equal(verifyInclusion(m, n, leafHash, path, tree.root(n - 1)), false);
        assert.equal(verifyInclusion((m + 1) % n, n, leafHash, path, root), false);
        assert.equal(verifyInclusion(m, n, leafHash, path.slice(0, -1), root), false);
        if (path.length > 0) {
          const bad = path.map((p) => p.slice());
          const target = bad[flipSeed % bad.length]!;
          target[bitSeed % 32]! ^= 1 << (bitSeed % 8);
          assert.equal(verifyInclusion(m, n, leafHash, bad, root), false);
        }
        const first = 1 + (mSeed % (n - 1));
        const proof = tree.consistencyProof(first);
        assert.ok(verifyConsistency(first, n, tree.root(first), root, proof));
        const badRoot = root.slice();
        badRoot[bitSeed % 32]! ^= 1;
        assert.equal(verifyConsistency(first, n, tree.root(first), badRoot, proof), false);
        assert.equal(verifyConsistency(first, n, tree.root(first), root, []), false);
      },
    ),
    { numRuns: RUNS },
  );
});

test("proof requests outside the tree are typed errors", () => {
  const tree = new MerkleTree([hex("01")]);
  assert.throws(() => tree.inclusionProof(1), { name: "EvidenceError", code: "BAD_PROOF" });
  assert.throws(() => tree.consistencyProof(2), { name: "EvidenceError", code: "BAD_PROOF" });
});
