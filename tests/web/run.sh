#!/usr/bin/env bash
# The browser app's tests: serve.py (python3 unittest), the relaxed-SIMD opcode rewriter (web/tools/
# wasm_relaxed.py), the wasm backend's numerics against the NumPy reference (node; both SIMD builds), and
# the end-to-end test in headless chromium (node + playwright-core). Prints "web: N passed, M failed" last;
# exits non-zero on any failure.
#   tests/web/run.sh [www root]      (default build-web/www, made by scripts/build_web.sh)
# Needs: python3 with numpy, node, /usr/bin/chromium, and playwright-core in tests/web/node_modules
# (installed here from tests/web/package-lock.json on the first run: `npm ci --prefix tests/web`).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WWW="${1:-$ROOT/build-web/www}"
passed=0 failed=0

count() {  # count <log> <prefix>: adds the "<prefix>: N passed, M failed" line of a log to the totals
    local line; line="$(grep -E "^$2: [0-9]+ passed, [0-9]+ failed" "$1" | tail -1)"
    if [ -z "$line" ]; then failed=$((failed + 1)); echo "web: no result line from $2"; return; fi
    passed=$((passed + $(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.*passed, ([0-9]+) failed.*/\1/')))
}

log="$(mktemp)"
python3 "$HERE/test_serve.py" 2>&1 | tee "$log"
count "$log" serve
python3 "$HERE/test_serve_hardening.py" 2>&1 | tee "$log"
count "$log" serve-hardening
python3 "$HERE/test_wasm_relaxed.py" 2>&1 | tee "$log"
count "$log" wasm-relaxed

# The wasm backend's logits against the NumPy reference (igpt_dump_logits sits in the build folder above www/)
# (Debian's python3, which has numpy, like the native suite's reference tests: not whatever python3 comes first)
/usr/bin/python3 "$HERE/test_wasm_numerics.py" "$(dirname "$WWW")" 2>&1 | tee "$log"
count "$log" wasm-numerics

if [ ! -f "$WWW/igpt_web.js" ]; then
    echo "web: $WWW/igpt_web.js missing -- build first: scripts/build_web.sh"
    failed=$((failed + 1))
else
    if [ ! -d "$HERE/node_modules/playwright-core" ]; then
        (cd "$HERE" && npm ci --no-audit --no-fund >/dev/null 2>&1 || npm install --no-audit --no-fund >/dev/null)
    fi
    timeout 600 node "$HERE/e2e.js" "$WWW" 2>&1 | tee "$log"
    count "$log" e2e
fi
rm -f "$log"
echo "web: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
