#!/usr/bin/env bash
# A fuzzing campaign over every target, one after the other on one core, each for the given
# number of seconds; then each corpus is minimised (cargo fuzz cmin) so what is committed
# stays small. One line per target is appended to fuzz/campaigns.tsv: date, target, wall
# and CPU seconds (from GNU time: what "CPU-hours" in docs/RELIABILITY.md adds up), runs,
# corpus size before and after minimising, and crashes found.
#
#   fuzz/run.sh                 600 s per target, every target
#   fuzz/run.sh 60 ini envelope 60 s each for two targets
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash leaves
# its input in fuzz/artifacts/TARGET/; fix it, then copy it to fuzz/regressions/TARGET/
# (replayed by `fuzz/run.sh --replay`, which CI-free machines can run in seconds).
set -euo pipefail
cd "$(dirname "$0")"

all=(ini sql_template envelope fallback headers dsn_mask virtuoso_wire sqlite_insert)
if [[ ${1:-} == --replay ]]; then
  # Every committed corpus entry and regression input through every target: no panic.
  cargo +nightly fuzz build -O >/dev/null
  for t in "${all[@]}"; do
    inputs=(corpus/$t regressions/$t)
    dirs=()
    for d in "${inputs[@]}"; do [[ -d $d ]] && dirs+=("$d"); done
    ./target/x86_64-unknown-linux-gnu/release/"$t" -runs=0 "${dirs[@]}" 2>&1 | grep -E '^(Done|==|thread)' || true
  done
  exit 0
fi

seconds=${1:-600}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

cargo +nightly fuzz build -O
log=campaigns.tsv
[[ -f $log ]] || printf 'date\ttarget\twall_s\tcpu_s\truns\tcorpus_before\tcorpus_after\tcrashes\n' >"$log"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  crashes_before=$(find "artifacts/$t" -type f | wc -l)
  out=$(mktemp)
  timing=$(mktemp)
  /usr/bin/time -f '%e %U %S' -o "$timing" \
    ./target/x86_64-unknown-linux-gnu/release/"$t" -max_total_time="$seconds" \
      -artifact_prefix="artifacts/$t/" "corpus/$t" >"$out" 2>&1 || true
  read -r wall user sys <"$timing"
  runs=$(grep -oE 'Done [0-9]+ runs' "$out" | grep -oE '[0-9]+' | tail -1 || true)
  [[ -n $runs ]] || runs=$(grep -oE '^#[0-9]+' "$out" | tail -1 | tr -d '#')
  before=$(find "corpus/$t" -type f | wc -l)
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1 || true
  after=$(find "corpus/$t" -type f | wc -l)
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - crashes_before ))
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
  printf '%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$wall" "$cpu" \
    "${runs:-?}" "$before" "$after" "$crashes" | tee -a "$log"
  [[ $crashes == 0 ]] || tail -40 "$out"
  rm -f "$out" "$timing"
done
awk -F'\t' 'NR > 1 { cpu += $4 } END { printf "campaigns.tsv: %.2f CPU-hours in all\n", cpu / 3600 }' "$log"
