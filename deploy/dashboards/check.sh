#!/usr/bin/env bash
# Validates deploy/dashboards/*.json against Grafana's published dashboard schema (the
# `Dashboard` type of npm's @grafana/schema, pinned in check/package-lock.json). Needs node and
# npm; the packages are installed into check/node_modules (ignored by git) on first use.
set -euo pipefail
cd "$(dirname "$0")/check"
[ -d node_modules/@grafana/schema ] || npm ci --silent --no-audit --no-fund
node check.mjs
