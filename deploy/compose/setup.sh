#!/bin/bash
# One-shot setup for deploy/compose.yaml, run as the `setup` service (as root, so it
# can hand the files to the gateways' user). Idempotent: what exists is kept.
#
#   /ca                  the CA directory (ca.key stays here: gateways never see it)
#   /etc/tongban/pki     what the gateways need: server certificate and key, CA, CRL
#   /etc/tongban/keys    the Ed25519 key both gateways sign answers and checkpoints with
#   /clients             client certificates to try the API with (docker compose cp)
set -euo pipefail

CA=/ca
PKI=/etc/tongban/pki
KEYS=/etc/tongban/keys
CLIENTS=/clients
CONFIG=/etc/tongban/tongban.toml
GATEWAY_UID=10001

if [ ! -f "$CA/ca.pem" ]; then
  tongban certs init --ca-dir "$CA" --cn "Tongban Compose CA"
fi

# The gateways' server certificate: every name a counter may reach them by.
if [ ! -f "$PKI/server.pem" ]; then
  tongban certs issue server --ca-dir "$CA" --out "$PKI" --name server \
    --dns localhost --dns lb --dns gateway-1 --dns gateway-2 --ip 127.0.0.1
fi

# Client certificates: the identity is the URI SAN; roles are bound in policy.
client() {
  [ -f "$CLIENTS/$1.pem" ] || tongban certs issue client --ca-dir "$CA" --out "$CLIENTS" \
    --name "$1" --identity "$2"
}
client counter-a urn:tongban:sz-hrss:counter-01
client counter-b urn:tongban:sz-civil:counter-01
client admin urn:tongban:sz-psb:admin-01
client auditor urn:tongban:sz-data:auditor-01

# Every run: the current CA and CRL (after `tongban certs revoke --ca-dir /ca …`, run
# setup again; the gateways pick the new CRL up within a second).
cp "$CA/ca.pem" "$CA/crl.pem" "$PKI/"
cp "$CA/ca.pem" "$CLIENTS/"

if [ ! -f "$KEYS/signing.pem" ]; then
  tongban certs signing-key --out "$KEYS/signing.pem"
fi

chown -R "$GATEWAY_UID:$GATEWAY_UID" "$PKI" "$KEYS" "$CLIENTS"

# The agreements, into the shared store (versioned, audited in the shared chain).
tongban policy apply -f /setup/agreements.toml --config "$CONFIG" --actor compose-setup
