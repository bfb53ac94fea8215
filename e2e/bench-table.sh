#!/usr/bin/env bash
# Runs every benchmark and prints one table: figure, ours, anchor, ratio, with the machine.
# Sizes come from each bench's environment variables (see README "Benchmarks"); BENCHES
# picks a subset, e.g. BENCHES="primary_reaction side_by_side".
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(mktemp)
trap 'rm -f "$table"' EXIT
export MULTUS_BENCH_TABLE=$table
for bench in ${BENCHES:-side_by_side daemonset_restart primary_reaction fleet operator_scale convergence agent_idle}; do
  echo "== cargo bench -p multus-e2e --bench $bench" >&2
  cargo bench -q -p multus-e2e --bench "$bench" >&2
done
cores=$(nproc)
mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
echo
echo "Machine: $cores cores, $mem ($(uname -m), $(date -u +%Y-%m-%d))"
echo
echo "| figure | ours | anchor | ratio |"
echo "| --- | --- | --- | --- |"
awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}' "$table"
