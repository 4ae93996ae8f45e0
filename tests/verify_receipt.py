#!/usr/bin/env python3
"""Check Tongban answers and audit-log proofs independently of Tongban's own code.

Written from docs/audit.md ("Checking a receipt") alone, with Python's hashlib,
`rfc8785` (JCS) and `cryptography` (Ed25519): its own signed-note parsing and its own
RFC 9162 proof verification, no code shared with the project.

    python3 verify_receipt.py answer ANSWER.json JWKS.json
        the answer (and every bundle item in it) is bound to its audit record, and the
        record is proven in a checkpoint signed by a key of the JWKS
    python3 verify_receipt.py consistency OLD_NOTE NEW_NOTE PROOF.json JWKS.json
        both checkpoints are signed by a key of the JWKS and PROOF (a JSON list of
        base64 hashes, or an object with a `consistency` list) proves the tree of
        OLD_NOTE is a prefix of the tree of NEW_NOTE

Exit 0 printing "OK ..." when everything checks; exit 1 naming the first problem.
"""

import base64
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Failed(Exception):
    pass


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def ed25519_keys(jwks):
    return [
        b64url_decode(k["x"])
        for k in jwks.get("keys", [])
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    ]


# --- signed notes (c2sp.org/signed-note) and checkpoints (c2sp.org/tlog-checkpoint)


def open_note(note, keys):
    """The checkpoint (origin, size, root) of a note signed by one of `keys`."""
    cut = note.rfind("\n\n")
    if cut < 0:
        raise Failed("the checkpoint is not a signed note (no blank line)")
    text, sigs = note[: cut + 1], note[cut + 2 :]
    lines = text.split("\n")
    if len(lines) < 4:
        raise Failed("the checkpoint text is not origin, size and root")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit():
        raise Failed(f"the checkpoint size {size!r} is not a number")
    root = base64.b64decode(root, validate=True)
    if len(root) != 32:
        raise Failed("the checkpoint root is not 32 bytes")
    for key in keys:
        key_id = sha256(origin.encode(), b"\n", b"\x01", key)[:4]
        for line in sigs.split("\n"):
            if not line.startswith("\u2014 "):
                continue
            name, _, sig = line[2:].rpartition(" ")
            raw = base64.b64decode(sig)
            if name != origin or len(raw) != 68 or raw[:4] != key_id:
                continue
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(raw[4:], text.encode())
                return origin, int(size), root
            except InvalidSignature:
                raise Failed(f"the signature of {origin} over the checkpoint does not verify")
    raise Failed("no signature on the checkpoint by a key of the JWKS")


# --- RFC 9162 §2.1.3.2 and §2.1.4.2


def node(left, right):
    return sha256(b"\x01", left, right)


def root_from_inclusion(index, size, leaf, proof):
    if index >= size:
        raise Failed(f"leaf {index} is beyond the tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Failed("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Failed("the inclusion proof is too short")
    return r


def check_consistency(old_size, old_root, new_size, new_root, proof):
    if old_size > new_size:
        raise Failed("the old tree is larger than the new one")
    if old_size == new_size:
        if proof or old_root != new_root:
            raise Failed("equal sizes with different roots (or a proof)")
        return
    if old_size == 0:
        if proof:
            raise Failed("a proof from the empty tree")
        return
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        proof = [old_root] + list(proof)
    if not proof:
        raise Failed("an empty consistency proof")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise Failed("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise Failed("the consistency proof is too short")
    if fr != old_root:
        raise Failed("the consistency proof does not lead to the old root")
    if sr != new_root:
        raise Failed("the consistency proof does not lead to the new root")


# --- answers


def check_answer(answer, keys, what):
    receipt = answer.get("audit") if isinstance(answer, dict) else None
    if not isinstance(receipt, dict):
        raise Failed(f"{what}: no `audit` receipt")
    origin, size, root = open_note(receipt["checkpoint"], keys)
    record = receipt["record"]
    index = receipt["index"]
    # The record's object; its canonical JSON is the leaf's bytes. (A string is the
    # earlier form: the bytes themselves.)
    record_bytes = record.encode("utf-8") if isinstance(record, str) else rfc8785.dumps(record)
    leaf = sha256(b"\x00", record_bytes)
    proof = [base64.b64decode(h, validate=True) for h in receipt["inclusion"]]
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise Failed(f"{what}: record {index + 1} is not in the signed tree of {size}")
    record = json.loads(record_bytes)
    if record.get("seq") != index + 1 or receipt.get("seq") != index + 1:
        raise Failed(f"{what}: seq is not index + 1")
    rest = {k: v for k, v in answer.items() if k != "audit"}
    digest = hashlib.sha256(rfc8785.dumps(rest)).hexdigest()
    if record.get("answer_sha256") != digest:
        raise Failed(f"{what}: audit record {index + 1} does not bind this answer")
    print(f"OK {what}: bound to audit record {index + 1}, leaf {index} of the tree of {size} of {origin}")


def main(argv):
    if len(argv) == 4 and argv[1] == "answer":
        answer = json.load(open(argv[2], encoding="utf-8"))
        keys = ed25519_keys(json.load(open(argv[3], encoding="utf-8")))
        check_answer(answer, keys, "the answer")
        for item in answer.get("items", []):
            check_answer(item, keys, f"item {item.get('item', '?')}")
    elif len(argv) == 6 and argv[1] == "consistency":
        keys = ed25519_keys(json.load(open(argv[5], encoding="utf-8")))
        old = open_note(open(argv[2], encoding="utf-8").read(), keys)
        new = open_note(open(argv[3], encoding="utf-8").read(), keys)
        if old[0] != new[0]:
            raise Failed(f"two logs: {old[0]} and {new[0]}")
        proof = json.load(open(argv[4], encoding="utf-8"))
        if isinstance(proof, dict):
            proof = proof["consistency"]
        proof = [base64.b64decode(h, validate=True) for h in proof]
        check_consistency(old[1], old[2], new[1], new[2], proof)
        print(f"OK the tree of {old[1]} is a prefix of the tree of {new[1]} of {new[0]}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Failed as e:
        print(f"FAILED: {e}")
        sys.exit(1)
    except (KeyError, TypeError, ValueError) as e:
        print(f"FAILED: malformed input: {e!r}")
        sys.exit(1)
