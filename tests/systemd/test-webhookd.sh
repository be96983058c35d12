#!/bin/bash
# Runs INSIDE the systemd sandbox (root, systemd 252): installs the .deb given as $1 with apt, then
# checks what an operator relies on; prints PASS/FAIL lines and exits 1 if anything failed.
# usage: test-webhookd.sh /sdh/webhookd_VERSION_amd64.deb   (receiver.py beside it)
set -u
. "$(dirname "$0")/checks.sh"
RX=http://127.0.0.1:8080
is_state() { [ "$(prop ActiveState)" = "$1" ]; }
restarts_above() { [ "$(prop NRestarts)" -gt "$1" ]; }
journal_since() { journalctl -u "$U" --no-pager -o cat --since "@$1"; }
journal_has_since() { journal_since "$1" | grep -q -- "$2"; }
received() { grep -c " $1" /root/rx.log 2>/dev/null || true; }      # requests whose path starts with $1
unique() { grep " $1" /root/rx.log 2>/dev/null | cut -d' ' -f1 | sort -u | wc -l; }
has_unique() { [ "$(unique "$1")" -ge "$2" ]; }
stream() { # PREFIX N: enqueue N messages as JSON lines, one durable group at a time
    local i
    for i in $(seq 1 "$2"); do echo "{\"url\":\"$RX$1/$i\",\"body\":\"{}\"}"; sleep 0.01; done |
        webhookd enqueue --jsonl - --stream >/dev/null
}

section "apt install of the package"
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1" >/root/apt.log 2>&1
rc=$?
check "apt-get install exits 0 (rc $rc)" test "$rc" = 0
check "no warning, error or prompt during install" bash -c "! grep -Ei 'warning|error|\\[Y/n\\]|configuration file ./' /root/apt.log"
sed 's/^/    /' /root/apt.log | tail -n 5

section "receiver inside the container"
python3 /sdh/receiver.py /root/rx.log &
rxpid=$!
check "receiver listens" wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/8080"

section "after install: user, directory, unit enabled and started"
check "user webhookd exists" getent passwd webhookd
check "group webhookd exists" getent group webhookd
check "webhookd.service is enabled" test "$(systemctl is-enabled $U)" = enabled
check "webhookd.service is active" systemctl is-active --quiet $U
check "state directory is 2770 webhookd:webhookd" test "$(stat -c '%a %U %G' /var/lib/webhookd)" = "2770 webhookd webhookd"
check "database created 0660" wait_for 5 test "$(stat -c '%a' /var/lib/webhookd/webhookd.db 2>/dev/null)" = 660
check "webhookd status (root) says running" webhookd status

section "readiness: systemctl start returns after READY=1"
systemctl stop $U
# The receiver listens on loopback, which the egress policy denies by default: open it in the
# packaged config's [egress] table.
sed -i 's|^#allow = \["10.20.0.0/16"\]|allow = ["127.0.0.0/8"]|' /etc/webhookd/webhookd.toml
check "the packaged config's egress.allow is set" grep -q '^allow = \["127.0.0.0/8"\]' /etc/webhookd/webhookd.toml
t0=$(date +%s)
check "Type=notify, so start waits for READY=1 (Type=$(prop Type))" test "$(prop Type)" = notify
check "systemctl start exits 0" systemctl start $U
check "active as soon as start returns" is_state active
check "the daemon's start line is in the journal before start returned" journal_has_since "$t0" "started: db /var/lib/webhookd/webhookd.db"

section "a member of group webhookd enqueues; it is delivered"
useradd -m alice && usermod -aG webhookd alice
useradd -m bob
uuid=$(runuser -u alice -- webhookd enqueue "$RX/alice" -d '{"hello":1}')
check "alice's enqueue printed a uuid ($uuid)" grep -Eq '^[0-9a-f-]{36}$' <<<"$uuid"
check "alice's message delivered" wait_for 10 has_unique /alice 1
check "alice sees it delivered" bash -c "runuser -u alice -- webhookd show $uuid --json | grep -q '\"state\":\"delivered\"'"
runuser -u bob -- webhookd enqueue "$RX/bob" -d x 2>/tmp/bob.err; rc=$?
check "bob (not in the group) is refused with 77 (got $rc: $(cat /tmp/bob.err))" test "$rc" = 77

section "the API socket: group webhookd only"
check "runtime directory /run/webhookd is 770 webhookd:webhookd" test "$(stat -c '%a %U %G' /run/webhookd)" = "770 webhookd webhookd"
check "API socket is 660 webhookd:webhookd" test "$(stat -c '%a %U %G' /run/webhookd/api.sock)" = "660 webhookd webhookd"
check "alice's enqueue went through the socket" bash -c "curl -s --unix-socket /run/webhookd/api.sock http://webhookd/metrics | grep -q '^webhookd_api_requests_total{route=\"/v1/messages\",code=\"202\"} [1-9]'"
code=$(runuser -u alice -- curl -s -o /tmp/alice-api.json -w '%{http_code}' --unix-socket /run/webhookd/api.sock \
    -H 'Content-Type: application/json' -d "{\"url\": \"$RX/alice-api\", \"body\": \"via curl\"}" http://webhookd/v1/messages)
check "alice posts with curl --unix-socket: 202 (got $code: $(cat /tmp/alice-api.json))" test "$code" = 202
check "alice's API message delivered" wait_for 10 has_unique /alice-api 1
code=$(runuser -u bob -- curl -s -o /dev/null -w '%{http_code}' --unix-socket /run/webhookd/api.sock http://webhookd/healthz || true)
check "bob cannot connect to the socket (got $code)" test "$code" = 000
check "readyz answers ready" bash -c "curl -s --unix-socket /run/webhookd/api.sock http://webhookd/readyz | grep -q ready"
check "the packaged binary serves the dashboard under its policy" bash -c "curl -s -D - --unix-socket /run/webhookd/api.sock http://webhookd/ui/ | grep -q \"^content-security-policy: default-src 'none'\""
check "the dashboard's data needs a login" test "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket /run/webhookd/api.sock http://webhookd/ui/api/status)" = 401
check "metrics count deliveries (published every 5 s)" wait_for 10 bash -c "curl -s --unix-socket /run/webhookd/api.sock http://webhookd/metrics | grep -q '^webhookd_deliveries_total{endpoint=\"\"} [1-9]'"

section "endpoints at runtime: the packaged secrets key"
check "secrets key is 640 root:webhookd" test "$(stat -c '%a %U %G' /etc/webhookd/secrets.key)" = "640 root webhookd"
check "bob cannot read the secrets key" bash -c "! runuser -u bob -- cat /etc/webhookd/secrets.key 2>/dev/null"
added=$(runuser -u alice -- webhookd endpoints add alice-ep --url "$RX/alice-ep" --tenant alice --json 2>&1)
check "alice adds an endpoint at runtime: its secret shown once" grep -q '"secret":"whsec_' <<<"$added"
runuser -u alice -- webhookd enqueue --endpoint alice-ep -d '{"runtime":1}' >/dev/null
check "the running daemon delivers to it (no restart, no reload)" wait_for 10 has_unique /alice-ep 1
secret=$(sed -E 's/.*"secret":"([^"]+)".*/\1/' <<<"$added")
check "the database does not hold the secret" bash -c "! grep -qF -- '$secret' /var/lib/webhookd/webhookd.db /var/lib/webhookd/webhookd.db-wal"

section "systemctl status shows the STATUS= line"
check "StatusText has the counts" wait_for 10 bash -c "systemctl show -p StatusText --value $U | grep -q 'delivered in the last minute'"
echo "    StatusText: $(prop StatusText)"
check "systemctl status prints it" bash -c "systemctl status $U --no-pager | grep -q 'Status: \".*in flight'"

section "journalctl -p warning shows dead letters"
dead=$(webhookd enqueue "$RX/dead" -d x)
check "dead-lettered at warning priority" wait_for 10 bash -c "journalctl -u $U -p warning --no-pager -o cat | grep -q 'dead-lettered $dead'"
check "info lines are not at warning" bash -c "! journalctl -u $U -p warning --no-pager -o cat | grep -q 'started: db'"

section "systemctl reload applies a changed setting without dropping messages"
t0=$(date +%s)
stream /reload 200 &
spid=$!
sleep 0.5
sed -i 's/^#workers = 16/workers = 3/' /etc/webhookd/webhookd.toml
pid0=$(prop MainPID)
check "systemctl reload exits 0" systemctl reload $U
check "same process after reload" test "$(prop MainPID)" = "$pid0"
check "journal: workers 16 -> 3" wait_for 5 journal_has_since "$t0" "workers 16 -> 3"
check "3 worker threads now" wait_for 5 bash -c "[ \$(grep -l '^webhookd-worke' /proc/$pid0/task/*/comm | wc -l) = 3 ]"
wait $spid
check "all 200 messages of the stream delivered" wait_for 20 has_unique /reload 200

section "an endpoint signs with a secret from LoadCredential= (readable by the service only)"
echo "whsec_$(head -c 32 /dev/urandom | base64)" >/etc/webhookd/billing.secret
echo "Bearer $(head -c 12 /dev/urandom | base64)" >/etc/webhookd/billing.token
chmod 600 /etc/webhookd/billing.secret /etc/webhookd/billing.token
mkdir -p /etc/systemd/system/$U.d
printf '[Service]\nLoadCredential=billing-secret:/etc/webhookd/billing.secret\nLoadCredential=billing-token:/etc/webhookd/billing.token\n' >/etc/systemd/system/$U.d/credentials.conf
printf '\n[endpoints.billing]\nurl = "%s/signed"\nsecret_file = "billing-secret"\nheader_files = { Authorization = "billing-token" }\n' "$RX" >>/etc/webhookd/webhookd.toml
systemctl daemon-reload
check "restart with the credentials exits 0" systemctl restart $U
uuid=$(runuser -u alice -- webhookd enqueue --endpoint billing --path /invoice -d '{"amount":42}')
check "alice enqueues to the endpoint without reading its secret ($uuid)" grep -Eq '^[0-9a-f-]{36}$' <<<"$uuid"
check "delivered to /signed/invoice" wait_for 10 grep -q "$uuid /signed/invoice" /root/rx.log
line=$(grep "\"$uuid\"" /root/rx.log.json)
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$line" "$1"; }
python3 -c 'import base64,json,sys; sys.stdout.buffer.write(base64.b64decode(json.loads(sys.argv[1])["body"]))' "$line" >/root/signed.body
check "the Authorization header came from the credential" test "$(field authorization)" = "$(cat /etc/webhookd/billing.token)"
check "webhookd verify accepts the signature" webhookd verify --secret-file /etc/webhookd/billing.secret \
    --id "$(field id)" --timestamp "$(field timestamp)" --signature "$(field signature)" -d @/root/signed.body
check "the secret is not in the journal" bash -c "! journalctl -u $U --no-pager | grep -qF -- \"\$(cut -c7-20 /etc/webhookd/billing.secret)\""
check "endpoints show (as alice) works and names no secret" bash -c "runuser -u alice -- webhookd endpoints show billing | grep -q 'healthy'"
rm -f /etc/systemd/system/$U.d/credentials.conf /etc/webhookd/billing.secret /etc/webhookd/billing.token /root/signed.body
sed -i '/^\[endpoints.billing\]/,$d' /etc/webhookd/webhookd.toml
systemctl daemon-reload
systemctl restart $U

section "systemctl restart during a stream loses nothing"
stream /restart 300 &
spid=$!
sleep 1
check "systemctl restart exits 0" systemctl restart $U
wait $spid
check "all 300 delivered" wait_for 30 has_unique /restart 300

section "kill -9 of the main process: systemd restarts it, nothing lost"
n0=$(prop NRestarts)
pid0=$(prop MainPID)
stream /kill 300 &
spid=$!
sleep 1
systemctl kill --kill-whom=main --signal=SIGKILL $U
check "restarted by systemd (NRestarts > $n0)" wait_for 15 restarts_above "$n0"
check "active again" wait_for 10 is_state active
check "new MainPID" test "$(prop MainPID)" != "$pid0"
wait $spid
check "all 300 delivered" wait_for 30 has_unique /kill 300

section "a wedged daemon is killed by the watchdog and restarted"
mkdir -p /etc/systemd/system/$U.d
printf '[Service]\nWatchdogSec=3s\nEnvironment=WEBHOOKD_TEST_WEDGE_FILE=/var/lib/webhookd/wedge\n' >/etc/systemd/system/$U.d/wedge.conf
systemctl daemon-reload
systemctl restart $U
n0=$(prop NRestarts)
sleep 1; ts=$(date +%s)
touch /var/lib/webhookd/wedge
check "the dispatcher wedged" wait_for 5 journal_has_since "$ts" "wedging the dispatcher"
rm -f /var/lib/webhookd/wedge
check "restarted by the watchdog" wait_for 15 restarts_above "$n0"
check "journal shows the watchdog timeout" journal_has_since "$ts" "Watchdog timeout"
check "active again" wait_for 10 is_state active
rm -rf /etc/systemd/system/$U.d
systemctl daemon-reload
systemctl restart $U

section "a broken config fails start once, with a clear line, and no restart loop"
cp /etc/webhookd/webhookd.toml /root/good.toml
sed -i '1i workers = "many"' /etc/webhookd/webhookd.toml
ts=$(date +%s)
n0=$(prop NRestarts)
systemctl restart $U 2>/dev/null; rc=$?
check "systemctl restart fails (rc $rc)" test "$rc" != 0
sleep 5
check "failed, not restarting ($(prop ActiveState)/$(prop SubState))" is_state failed
check "no restart attempted (NRestarts $n0 -> $(prop NRestarts))" test "$(prop NRestarts)" = "$n0"
check "exit status 78" test "$(prop ExecMainStatus)" = 78
journal_since "$ts" | grep webhookd: | head -3 | sed 's/^/    /'
check "journal names the file and the key" journal_has_since "$ts" "config /etc/webhookd/webhookd.toml: line .*workers"
cp /root/good.toml /etc/webhookd/webhookd.toml
systemctl reset-failed $U
check "starts again once fixed" systemctl start $U

section "systemd-analyze"
sec=$(systemd-analyze security --no-pager $U 2>&1)
score=$(grep -Eo 'Overall exposure level for webhookd.service: [0-9.]+' <<<"$sec" | grep -Eo '[0-9.]+$')
echo "    exposure: $score"
check "exposure score $score <= 1.5" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.5) }'
ver=$(systemd-analyze verify /lib/systemd/system/$U 2>&1)
check "systemd-analyze verify is silent (${ver:-ok})" test -z "$ver"

section "systemctl stop: drains and exits 0"
check "systemctl stop exits 0" systemctl stop $U
check "inactive (not failed) after stop" is_state inactive
check "main process exited 0" test "$(prop ExecMainStatus)" = 0

kill $rxpid 2>/dev/null
mkdir -p /sdh/artifacts && cp /root/rx.log /sdh/artifacts/ 2>/dev/null
summary "webhookd under systemd"
