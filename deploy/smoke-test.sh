#!/usr/bin/env bash
# Smoke test of Containerfile + compose.yaml: build, start the clinic group, check that the
# API answers through the proxy, that a signed-in request through the proxy is audited with
# the forwarded client address, and that the audit chain verifies; then tear it all down.
# Needs podman (with podman-compose or `podman compose`) or docker with its compose plugin;
# run by .ci/run only where one of them works.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
  compose=(podman compose)
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "deploy/smoke-test.sh: no working container engine" >&2
  exit 2
fi
export CRM_SECRET_KEY="smoke-test-secret-key-0123456789-abcdefghij"
project="crm-smoke-$$"
cleanup() { "${compose[@]}" -p "$project" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

"${compose[@]}" -p "$project" up -d --build
for _ in $(seq 1 60); do
  if curl -fsS http://127.0.0.1:8080/health >/dev/null 2>&1; then break; fi
  sleep 2
done
curl -fsS http://127.0.0.1:8080/health | grep -q '"ok"'

run() { "${compose[@]}" -p "$project" run --rm -T migrate "$@"; }
run crm location add sydney --name Sydney --timezone Australia/Sydney
run crm user add owner@example.com --location sydney --role admin
# Any address may reach the location here: what is checked is which address the server saw.
run crm ip allow 0.0.0.0/0 --location sydney
run crm ip allow ::/0 --location sydney
token="$(run crm token owner@example.com --location sydney | tail -n 1)"
auth=(-H "Authorization: Bearer $token")
curl -fsS "${auth[@]}" http://127.0.0.1:8080/api/contacts >/dev/null
# The request came through the trusted proxy: its audit entry holds the client's address
# (as the proxy forwarded it), not the proxy's own 172.28.5.10.
curl -fsS "${auth[@]}" 'http://127.0.0.1:8080/api/admin/audit?limit=50' | python3 -c '
import json, sys
entries = [e for e in json.load(sys.stdin)["items"] if e.get("request_path") == "/api/contacts"]
assert entries, "no audit entry for the request"
assert all(e["ip_address"] and e["ip_address"] != "172.28.5.10" for e in entries), entries
print("client address seen through the proxy:", entries[0]["ip_address"])
'
run crm audit verify
echo "container smoke test: ok"
