#!/usr/bin/env python3
"""Verify a Tongban audit export independently of Tongban's own code.

Follows the procedure in the README ("Verifying an audit export"), with the `rfc8785`
package (JCS) and `cryptography` (Ed25519) from PyPI:

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


def main(argv):
    path = argv[1]
    jwks = None
    if "--jwks" in argv:
        with open(argv[argv.index("--jwks") + 1], encoding="utf-8") as f:
            jwks = json.load(f)
    header, records, checkpoints = None, [], []
    for kind, obj in read_export(path):
        if kind == "export":
            header = obj
        elif kind == "record":
            records.append(obj)
        elif kind == "checkpoint":
            checkpoints.append(obj["checkpoint"])
    if header is None:
        return fail(None, "no export header")
    jwks = jwks or header["jwks"]
    keys = {
        k["kid"]: Ed25519PublicKey.from_public_bytes(b64url_decode(k["x"]))
        for k in jwks["keys"]
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    }

    # Step 1: every checkpoint is signed by a trusted key.
    for cp in checkpoints:
        try:
            verify_checkpoint(cp, keys)
        except (ValueError, InvalidSignature) as e:
            return fail(cp["seq"], f"checkpoint signature does not verify: {e or 'bad signature'}")

    # Step 2: the chain, from the anchor, record by record.
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

    # Step 3: every checkpoint in range matches the chain; none lies beyond its end.
    last = records[-1]["seq"] if records else header["from"] - 1
    for cp in checkpoints:
        if cp["seq"] > last:
            return fail(last + 1, f"a checkpoint seals seq {cp['seq']} but the export ends at {last}: truncated")
        if cp["seq"] in hashes and hashes[cp["seq"]] != cp["hash"]:
            return fail(cp["seq"], "record does not match its signed checkpoint")
    sealed = max([cp["seq"] for cp in checkpoints], default=0)
    print(f"OK {len(records)} records, {len(checkpoints)} checkpoints, sealed up to seq {sealed}, last seq {last}")
    return 0


def fail(seq, reason):
    print(f"FAILED at seq {seq}: {reason}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
