#!/usr/bin/env bash
# Checks netshim's Prometheus rules: promtool check rules on both rule files, promtool test rules
# on the unit tests. Exits non-zero on any failure (or when promtool is missing).
# Needs promtool (Debian: apt-get install prometheus; scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v promtool >/dev/null; then
  echo "install/kubernetes/rules/check.sh: promtool not found (apt-get install prometheus)" >&2
  exit 1
fi

promtool check rules netshim-recommended.rules.yaml netshim-shim-join.rules.yaml
promtool test rules netshim-recommended.test.yaml netshim-shim-join.test.yaml both.test.yaml \
  both-join-first.test.yaml

# The PrometheusRule objects are generated from the rule files: they must not be stale.
for pair in "netshim netshim-recommended.rules.yaml ../prometheusrule.yaml" \
            "netshim-shim-join netshim-shim-join.rules.yaml ../prometheusrule-shim-join.yaml"; do
  set -- $pair
  if ! ./to-prometheusrule.sh "$1" "$2" | diff -u "$3" - >/dev/null; then
    echo "install/kubernetes/$(basename "$3") is stale: run rules/to-prometheusrule.sh $1 rules/$2 > $(basename "$3")" >&2
    exit 1
  fi
done
echo "PrometheusRule objects match their rule files"
