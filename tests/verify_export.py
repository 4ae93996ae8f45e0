#!/usr/bin/env python3
"""Verify a Tongban audit export independently of Tongban's own code.

Follows the procedure in docs/audit.md ("Verifying an audit export"), with the
`rfc8785` package (JCS) and `cryptography` (Ed25519) from PyPI. Takes format
`tongban-audit-export/2` (signed notes of the Merkle tree, and the JWS checkpoints of
stores sealed before those) and `/1` (JWS checkpoints only):

    pip install rfc8785 cryptography
    python3 verify_export.py export.jsonl [--jwks jwks.json]
    python3 verify_export.py export.csv   [--jwks jwks.json]

Without --jwks the keys in the export header are used; a real third party takes the
gateway's key from elsewhere (its /.well-known/jwks.json, or the department).

Exit 0 and "OK ..." when everything verifies; exit 1 naming the first problem.
"""

import base64
import csv
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64url_encode(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def read_export(path):
    """Yield (type, object) pairs from a JSON Lines or CSV export."""
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                obj = json.loads(row["json"])
                kind = row["type"]
                if kind == "record":
                    obj = {"type": "record", "seq": int(row["seq"]), "hash": row["hash"], "record": obj}
                elif kind == "checkpoint":
                    obj = {"type": "checkpoint", "checkpoint": obj}
                elif kind == "note":
                    obj = {"type": "note", "seq": int(row["seq"]), "hash": row["hash"], "note": obj["note"]}
                yield kind, obj
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    yield obj["type"], obj


def verify_checkpoint(cp, keys):
    """Step 1: the checkpoint's detached JWS over the JCS of its other members."""
    header_b64, payload_b64, sig_b64 = cp["signature"].split(".")
    if payload_b64 != "":
        raise ValueError("signature is not a detached JWS")
    header = json.loads(b64url_decode(header_b64))
    if header.get("alg") != "EdDSA":
        raise ValueError(f"unexpected alg {header.get('alg')}")
    key = keys.get(header.get("kid"))
    if key is None:
        raise ValueError(f"no trusted key with kid {header.get('kid')}")
    body = {k: v for k, v in cp.items() if k != "signature"}
    signing_input = f"{header_b64}.{b64url_encode(rfc8785.dumps(body))}".encode()
    key.verify(b64url_decode(sig_b64), signing_input)


def leaf_hash(record_bytes):
    return hashlib.sha256(b"\x00" + record_bytes).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(frontier):
    """RFC 9162 root from the roots of the complete subtrees, largest first."""
    if not frontier:
        return hashlib.sha256(b"").digest()
    h = frontier[-1]
    for left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


def push_leaf(frontier, size, leaf):
    """Append leaf number `size` (0-based): merge equal-sized subtrees, as a binary counter carries."""
    h, n = leaf, size
    while n & 1:
        h = node_hash(frontier.pop(), h)
        n >>= 1
    frontier.append(h)


def verify_note(text, keys):
    """A C2SP signed note holding a tlog checkpoint: its origin, size and root once a
    trusted Ed25519 key's signature named after the origin verifies over the text.
    Key id: SHA-256(origin || 0x0A || 0x01 || public key)[:4]."""
    split = text.rfind("\n\n")
    if split < 0:
        raise ValueError("no blank line before the signatures")
    body, sigs = text[: split + 1], text[split + 2 :]
    lines = body.split("\n")
    if len(lines) < 4:
        raise ValueError("a checkpoint is origin, size and root")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
    for raw in keys.values():
        key_id = hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()[:4]
        for line in sigs.splitlines():
            if not line.startswith("\u2014 "):
                raise ValueError("a signature line starts with an em dash")
            name, _, sig = line[2:].partition(" ")
            blob = base64.b64decode(sig, validate=True)
            if name == origin and blob[:4] == key_id:
                Ed25519PublicKey.from_public_bytes(raw).verify(blob[4:], body.encode())
                return origin, size, root
    raise ValueError(f"no signature by a trusted key named {origin}")


def main(argv):
    path = argv[1]
    jwks = None
    if "--jwks" in argv:
        with open(argv[argv.index("--jwks") + 1], encoding="utf-8") as f:
            jwks = json.load(f)
    header, records, checkpoints, notes = None, [], [], []
    for kind, obj in read_export(path):
        if kind == "export":
            header = obj
        elif kind == "record":
            records.append(obj)
        elif kind == "checkpoint":
            checkpoints.append(obj["checkpoint"])
        elif kind == "note":
            notes.append(obj)
    if header is None:
        return fail(None, "no export header")
    jwks = jwks or header["jwks"]
    raw_keys = {
        k["kid"]: b64url_decode(k["x"])
        for k in jwks["keys"]
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    }
    keys = {kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in raw_keys.items()}

    # Step 1: every checkpoint is signed by a trusted key.
    for cp in checkpoints:
        try:
            verify_checkpoint(cp, keys)
        except (ValueError, InvalidSignature) as e:
            return fail(cp["seq"], f"checkpoint signature does not verify: {e or 'bad signature'}")

    # Step 1b: every signed note is signed by a trusted key and is of its seq's size.
    roots = {}
    for n in notes:
        try:
            origin, size, root = verify_note(n["note"], raw_keys)
        except (ValueError, InvalidSignature) as e:
            return fail(n["seq"], f"signed note does not verify: {e or 'bad signature'}")
        if size != n["seq"]:
            return fail(n["seq"], f"signed note of tree size {size} listed at seq {n['seq']}")
        if roots.get(size, root) != root:
            return fail(size, "two signed notes of one tree size with different roots")
        roots[size] = root

    # Step 2: the chain, from the anchor, record by record; and the Merkle tree, from
    # the header's frontier, leaf by leaf, its root met at each note's size.
    tree = header.get("tree")
    frontier = [base64.b64decode(h) for h in tree["frontier"]] if tree else None
    tree_size = tree["size"] if tree else None
    if tree and tree_size != header["from"] - 1:
        return fail(header["from"], "the header's tree frontier is not of the records before the export")
    sealed_by_notes = 0
    prev, expected, hashes = header["anchor"], None, {}
    for r in records:
        seq, rec = r["seq"], r["record"]
        if expected is not None and seq != expected:
            return fail(expected, f"record {expected} missing or out of order (found {seq})")
        if rec.get("seq") != seq:
            return fail(seq, f"record says seq {rec.get('seq')}")
        if rec.get("prev_hash") != prev:
            return fail(seq, "prev_hash does not match the previous record's hash")
        digest = hashlib.sha256(prev.encode("ascii") + rfc8785.dumps(rec)).hexdigest()
        if digest != r["hash"]:
            return fail(seq, "record content does not match its hash")
        hashes[seq] = digest
        prev, expected = digest, seq + 1
        if frontier is not None:
            push_leaf(frontier, tree_size, leaf_hash(rfc8785.dumps(rec)))
            tree_size += 1
            if tree_size in roots:
                if root_of(frontier) != roots[tree_size]:
                    return fail(sealed_by_notes + 1, f"the Merkle root of records 1..{tree_size} is not the signed note's")
                sealed_by_notes = tree_size

    # Step 3: every checkpoint in range matches the chain; none lies beyond its end.
    last = records[-1]["seq"] if records else header["from"] - 1
    for cp in checkpoints:
        if cp["seq"] > last:
            return fail(last + 1, f"a checkpoint seals seq {cp['seq']} but the export ends at {last}: truncated")
        if cp["seq"] in hashes and hashes[cp["seq"]] != cp["hash"]:
            return fail(cp["seq"], "record does not match its signed checkpoint")
    for size in roots:
        if size > last:
            return fail(last + 1, f"a signed note of tree size {size} but the export ends at {last}: truncated")
    if roots and frontier is None:
        return fail(header["from"], "signed notes but no tree frontier in the header: their roots cannot be checked")
    sealed = max([cp["seq"] for cp in checkpoints] + [sealed_by_notes], default=0)
    print(
        f"OK {len(records)} records, {len(notes)} signed notes, {len(checkpoints)} JWS checkpoints, "
        f"sealed up to seq {sealed}, last seq {last}"
    )
    return 0


def fail(seq, reason):
    print(f"FAILED at seq {seq}: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
