#!/usr/bin/env bash
# Makes the certificates the TLS tests use, with openssl, into DIR:
#   ca.crt, ca2.crt                  two independent CAs
#   server.{crt,key}                 localhost / 127.0.0.1, issued by ca
#   server2.{crt,key}                the same names, issued by ca2 (rotation)
#   client-acme.{crt,key}            CN=acme-client, issued by ca
#   client-stranger.{crt,key}        CN=stranger, issued by ca
#   client-rogue.{crt,key}           CN=acme-client, issued by ca2 (not trusted)
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
ca() {
  key "$1"
  openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 2 -subj "/CN=$1 test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() {  # name cn issuer ext
  key "$1"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -out "$1.crt" \
    -days 2 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca
ca ca2
server_ext="subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf server localhost ca "$server_ext"
leaf server2 localhost ca2 "$server_ext"
leaf client-acme acme-client ca "extendedKeyUsage=clientAuth"
leaf client-stranger stranger ca "extendedKeyUsage=clientAuth"
leaf client-rogue acme-client ca2 "extendedKeyUsage=clientAuth"
