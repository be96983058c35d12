# Sourced by the scripts that run inside the systemd sandbox (test-webhookd.sh, test-package.sh):
# PASS/FAIL bookkeeping and polling helpers. tests/systemd/run copies it into the sandbox beside
# them (/sdh).
U=webhookd.service
pass=0 fail=0
ok() { echo "PASS: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
prop() { systemctl show -p "$1" --value "$U"; }
ms() { date +%s%3N; }
wait_for() { # SECONDS CMD...: poll CMD every 0.1s until it succeeds
    local end=$(($(ms) + $1 * 1000)); shift
    until "$@"; do [ "$(ms)" -ge "$end" ] && return 1; sleep 0.1; done
}
section() { echo; echo "== $*"; }
summary() { # WHAT: the last line, and the exit status (1 if anything failed)
    echo
    echo "$1: $pass passed, $fail failed"
    [ "$fail" = 0 ]
}
