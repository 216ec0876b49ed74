#!/usr/bin/env bash
# Generates scangate's serving certificate with openssl: a private CA, and a server certificate for the
# Service DNS names (in-cluster) and 127.0.0.1 / localhost (out-of-cluster runs against a local
# kube-apiserver). The API server verifies it through the CA injected as the webhook's caBundle.
#
# usage: gen-certs.sh [--force]     (reuses existing files unless they expire within a day or --force)
#
# Environment: CERT_DIR (default .run/certs), NAMESPACE (default scangate), SERVICE (default scangate),
#              CERT_DAYS (default 365), EXTRA_SANS (e.g. "IP:10.0.0.170,DNS:scangate.example.com": how
#              a kube-apiserver outside the cluster network reaches an in-cluster scangate for
#              ImagePolicyWebhook)
# Writes $CERT_DIR/{ca.crt,ca.key,tls.crt,tls.key}; keys are mode 600 and never leave this directory
# except as the scangate-tls Secret.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require openssl

NAMESPACE="${NAMESPACE:-scangate}"
SERVICE="${SERVICE:-scangate}"
CERT_DAYS="${CERT_DAYS:-365}"
sans="DNS:$SERVICE,DNS:$SERVICE.$NAMESPACE,DNS:$SERVICE.$NAMESPACE.svc,DNS:$SERVICE.$NAMESPACE.svc.cluster.local"
sans+=",DNS:localhost,IP:127.0.0.1${EXTRA_SANS:+,$EXTRA_SANS}"

mkdir -p "$CERT_DIR"
chmod 700 "$CERT_DIR"

if [[ "${1:-}" != "--force" && -f "$CERT_DIR/tls.crt" && -f "$CERT_DIR/tls.key" && -f "$CERT_DIR/ca.crt" ]] &&
  [[ "$(cat "$CERT_DIR/sans.txt" 2>/dev/null)" == "$sans" ]] &&
  openssl x509 -in "$CERT_DIR/tls.crt" -noout -checkend 86400 >/dev/null; then
  log "reusing certificates in $CERT_DIR"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$((CERT_DAYS * 2))" -subj "/CN=scangate-webhook-ca" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
cat >"$tmp/server.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$sans
EOF
openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$SERVICE.$NAMESPACE.svc" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
openssl x509 -req -sha256 -days "$CERT_DAYS" -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
  -CAcreateserial -CAserial "$tmp/ca.srl" -extfile "$tmp/server.ext" -out "$tmp/tls.crt" 2>/dev/null
openssl verify -CAfile "$tmp/ca.crt" "$tmp/tls.crt" >/dev/null
chmod 600 "$tmp"/*.key
echo "$sans" >"$tmp/sans.txt"
mv "$tmp/ca.key" "$tmp/ca.crt" "$tmp/tls.key" "$tmp/tls.crt" "$tmp/sans.txt" "$CERT_DIR/"
log "wrote CA and server certificate ($sans) to $CERT_DIR"
