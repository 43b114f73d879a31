#!/usr/bin/env bash
# Builds `plane-fuzz` with libFuzzer and AddressSanitizer (into .build-fuzz, apart from the
# ordinary build) and runs every fuzz target (docs/security.md, "Fuzzing").
#
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 60) each: `make fuzz`;
#                                   writes the "Fuzzing" section of docs/benchmarks.md
#   scripts/fuzz.sh --ci            every target over its corpus, then FUZZ_SECONDS (default 15)
#                                   each; exit 1 on any finding: part of `make test`
#   scripts/fuzz.sh TARGET...       only these targets
#   scripts/fuzz.sh --save-corpus   no fuzzing: adds what the runs here found that reaches new
#                                   coverage to Tests/FuzzCorpusGrown/ (`make fuzz-corpus`)
#
# Each target starts from its seed corpus (Tests/FuzzCorpus/<target>/) and its grown corpus
# (Tests/FuzzCorpusGrown/<target>/: inputs earlier campaigns found that reach code the seeds
# do not, minimized by libFuzzer's merge) plus .build-fuzz/corpus/<target>/, where what
# libFuzzer finds new is kept for the next run. A crash is written to
# .build-fuzz/crashes/<target>/crash-*; add it to Tests/FuzzCorpus/<target>/ (and fix it):
# the unit tests replay that folder. Prints executions per second per target.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

ci=0
save=0
targets=()
for argument in "$@"; do
  case "$argument" in
    --ci) ci=1 ;;
    --save-corpus) save=1 ;;
    *) targets+=("$argument") ;;
  esac
done
seconds="${FUZZ_SECONDS:-$([ "$ci" = 1 ] && echo 15 || echo 60)}"
scratch=.build-fuzz

echo "fuzz: building plane-fuzz with -sanitize=fuzzer,address (into $scratch)"
mkdir -p "$scratch"
# SwiftPM passes `--sanitize fuzzer --sanitize address` to swiftc as two flags, and swiftc
# keeps only the last: Swift code would get AddressSanitizer but no coverage, and libFuzzer
# would mutate blind. `-Xswiftc -sanitize=fuzzer,address` comes after them and names both
# (the `--sanitize` flags stay for the C targets and the link).
if ! swift build --scratch-path "$scratch" --product plane-fuzz --sanitize fuzzer --sanitize address \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DPLANE_LIBFUZZER > "$scratch/build.log" 2>&1; then
  tail -n 40 "$scratch/build.log"
  echo "fuzz: the fuzzing build failed (log: $scratch/build.log)" >&2
  exit 1
fi
# Coverage-guided or nothing: our parsers' objects must carry libFuzzer's counters.
for object in "$scratch"/debug/PlaneProxy.build/HTTP1Parser.swift.o "$scratch"/debug/PlaneDNS.build/DNSMessageReader.swift.o; do
  # (Not `grep -q`: it would stop reading, and with pipefail readelf's SIGPIPE fails the test.)
  if [ "$(readelf -S "$object" 2>/dev/null | grep -c __sancov_cntrs)" = 0 ]; then
    echo "fuzz: $object has no coverage instrumentation; libFuzzer would fuzz blind" >&2
    exit 1
  fi
done
binary="$scratch/debug/plane-fuzz"
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls Tests/FuzzCorpus)
fi

# The Swift runtime's backtracer would take the crash signals libFuzzer reports.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"

if [ "$save" = 1 ]; then
  # Adds to the grown corpus what the campaigns kept in .build-fuzz/corpus that reaches
  # coverage the seeds and the grown corpus do not (libFuzzer's -merge=1 into a folder that
  # holds both: only new inputs are added, named by their SHA-1). Add-only, so that a
  # commit of it shows just the new inputs (a merge from scratch would pick a different
  # but equal set each time).
  status=0
  for target in "${targets[@]}"; do
    merged=$(mktemp -d)
    mkdir -p "Tests/FuzzCorpusGrown/$target" "$scratch/corpus/$target" "$scratch/logs"
    cp "Tests/FuzzCorpus/$target/"* "$merged/"
    cp -r "Tests/FuzzCorpusGrown/$target/." "$merged/"
    ls "$merged" > "$merged.before"
    if ! FUZZ_TARGET="$target" "$binary" -merge=1 -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
        "$merged" "$scratch/corpus/$target" > "$scratch/logs/$target.merge.log" 2>&1; then
      echo "fuzz: merging $target failed (log: $scratch/logs/$target.merge.log)" >&2
      status=1
      rm -rf "$merged" "$merged.before"
      continue
    fi
    rm -rf "${TMPDIR:-/tmp}"/plane-fuzz-layer-*
    added=0
    for file in "$merged"/*; do
      name=$(basename "$file")
      if ! grep -qxF -- "$name" "$merged.before"; then
        cp "$file" "Tests/FuzzCorpusGrown/$target/$name"
        added=$((added + 1))
      fi
    done
    rm -rf "$merged" "$merged.before"
    echo "fuzz: $target: $added new inputs, $(ls "Tests/FuzzCorpusGrown/$target" | wc -l) in Tests/FuzzCorpusGrown/$target"
  done
  exit "$status"
fi
status=0
rows="$scratch/rows"
: > "$rows"
printf '%-18s %12s %10s %8s %8s  %s\n' target executions "execs/s" seconds coverage result
for target in "${targets[@]}"; do
  corpus="$scratch/corpus/$target"
  crashes="$scratch/crashes/$target"
  mkdir -p "$corpus" "$crashes"
  cp -n "Tests/FuzzCorpus/$target/"* "$corpus/" 2>/dev/null
  log="$scratch/logs/$target.log"
  mkdir -p "$scratch/logs"
  grown="Tests/FuzzCorpusGrown/$target"
  [ -d "$grown" ] || grown=""
  FUZZ_TARGET="$target" "$binary" "$corpus" "Tests/FuzzCorpus/$target" $grown \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$crashes/" > "$log" 2>&1
  rc=$?
  rm -rf "${TMPDIR:-/tmp}"/plane-fuzz-layer-*  # the tar-layer target's scratch directories
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The edges (and compared values) libFuzzer has seen covered: it grows from the corpus
  # only when the code is instrumented.
  coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FINDING (exit $rc): $(ls -t "$crashes" | head -1)"
    status=1
  fi
  printf '%-18s %12s %10s %8s %8s  %s\n' "$target" "${executions:-?}" "${rate:-?}" "$seconds" "${coverage:-?}" "$result"
  echo "$target ${executions:-?} ${rate:-?} ${coverage:-0} $result" >> "$rows"
  if [ "$rc" -ne 0 ]; then
    grep -E "ERROR|Fatal error|fuzz invariant|SUMMARY|^#0 |^    #[0-9] " "$log" | head -n 25
    echo "    log: $log"
  fi
done
if [ "$ci" = 0 ] && [ "$status" = 0 ] && [ "$(wc -l < "$rows")" = "$(ls Tests/FuzzCorpus | wc -l)" ]; then
  python3 - "$rows" "$seconds" <<'PY'
import datetime, os, platform, re, sys
rows = [line.split(maxsplit=4) for line in open(sys.argv[1]) if line.strip()]
seconds = sys.argv[2]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
table = "\n".join(f"| `{r[0]}` | {int(r[2]):,} | {int(r[1]):,} | {int(r[3]):,} |" for r in rows)
section = f"""<!-- fuzz:start -->
## Fuzzing

`make fuzz` (`scripts/fuzz.sh`): every fuzz target (docs/security.md, "Fuzzing") under
libFuzzer with AddressSanitizer, a debug build with `-sanitize=fuzzer,address`, {seconds} s
each from its corpus, one at a time on {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()},
{datetime.date.today().isoformat()}. No finding. Coverage: the edges and compared values libFuzzer
saw covered at the end (`cov:`), of all the code the target reaches.

| Target | Executions/s | Executions | Coverage |
|---|---:|---:|---:|
{table}
<!-- fuzz:end -->
"""
path = "docs/benchmarks.md"
doc = open(path).read()
if "<!-- fuzz:start -->" in doc:
    doc = re.sub(r"<!-- fuzz:start -->.*?<!-- fuzz:end -->\n", lambda _: section, doc, flags=re.S)
else:
    doc = doc.rstrip("\n") + "\n\n" + section
open(path, "w").write(doc)
PY
  echo "fuzz: docs/benchmarks.md updated"
fi
exit "$status"
