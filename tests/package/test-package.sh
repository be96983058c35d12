#!/bin/bash
# Runs INSIDE the systemd sandbox (root, systemd 252) after test-webhookd.sh installed the first
# package: man pages, completions, then an upgrade to $1 (a higher version) that must keep queued
# messages and an edited config, then apt remove and apt purge as Debian policy says.
# Prints PASS/FAIL lines and exits 1 if anything failed.
# usage: test-package.sh /sdh/webhookd_HIGHER_amd64.deb
set -u
. "$(dirname "$0")/checks.sh"
export DEBIAN_FRONTEND=noninteractive
quiet_apt() { # apt-get ARGS...: must exit 0 without warnings, errors or prompts
    apt-get -y --no-install-recommends "$@" >/root/apt.log 2>&1 || { cat /root/apt.log; return 1; }
    # dpkg's conffile prompt starts "Configuration file '/etc/...'".
    ! grep -Ei 'warning|error|\[Y/n\]|configuration file ./' /root/apt.log || { cat /root/apt.log; return 1; }
}
version() { dpkg-query -W -f='${Version}' webhookd 2>/dev/null; }

section "installed package"
v1=$(version)
echo "    installed: $v1"
systemctl start $U
check "service active" systemctl is-active --quiet $U
check "webhookd --version names the release" bash -c "webhookd --version | grep -q '^webhookd ${v1%%-*}'"

section "man pages"
check "man webhookd renders" bash -c "man -P cat webhookd 2>/dev/null | grep -q 'reliable outbound webhook delivery'"
check "man webhookd shows EXIT STATUS" bash -c "man -P cat webhookd 2>/dev/null | grep -q 'EXIT STATUS'"
check "man 5 webhookd.toml renders" bash -c "man -P cat 5 webhookd.toml 2>/dev/null | grep -q 'max_attempts'"

section "shell completions"
check "bash: complete -p webhookd after loading bash-completion" bash -c \
    'source /usr/share/bash-completion/bash_completion; _completion_loader webhookd; complete -p webhookd | grep -q _webhookd'
words=$(bash -c 'source /usr/share/bash-completion/bash_completion; _completion_loader webhookd
    COMP_WORDS=(webhookd dl); COMP_CWORD=1; COMP_LINE="webhookd dl"; COMP_POINT=${#COMP_LINE}
    _webhookd webhookd dl webhookd; echo "${COMPREPLY[*]}"')
check "bash: 'webhookd dl<TAB>' completes to dlq (got: $words)" test "$words" = dlq
check "zsh completion installed" test -s /usr/share/zsh/vendor-completions/_webhookd
check "fish completion installed" test -s /usr/share/fish/vendor_completions.d/webhookd.fish

section "upgrade keeps queued messages and the edited config"
sed -i 's/^#\{0,1\}workers = .*/workers = 5/' /etc/webhookd/webhookd.toml
echo '# edited by the admin' >>/etc/webhookd/webhookd.toml
systemctl reload $U
uuids=()
for i in 1 2 3; do uuids+=("$(webhookd enqueue http://127.0.0.1:9/later/$i --delay 1h -d x)"); done
pid0=$(prop MainPID)
ts=$(date +%s)
check "apt-get install of the higher version: no error, warning or prompt" quiet_apt install "$1"
v2=$(version)
check "version went up ($v1 -> $v2)" dpkg --compare-versions "$v2" gt "$v1"
check "service active after the upgrade" wait_for 10 systemctl is-active --quiet $U
check "service restarted (MainPID $pid0 -> $(prop MainPID))" test "$(prop MainPID)" != "$pid0"
check "edited config kept" grep -q '^# edited by the admin' /etc/webhookd/webhookd.toml
check "no .dpkg-dist/.dpkg-old left (the packaged file did not change)" bash -c '! ls /etc/webhookd/*.dpkg-* 2>/dev/null | grep -q .'
check "the restarted daemon runs the edited config (5 workers)" bash -c "journalctl -u $U --since @$ts -o cat | grep -q ', 5 workers'"
for u in "${uuids[@]}"; do
    check "queued message $u still pending" bash -c "webhookd show $u --json | grep -q '\"state\":\"pending\"'"
done

section "apt remove: stops the service, keeps config and data"
check "apt-get remove exits 0 quietly" quiet_apt remove webhookd
check "service not running" bash -c "! systemctl is-active --quiet $U"
check "no webhookd process left" test -z "$(pgrep -x webhookd)"
check "binary removed" test ! -e /usr/bin/webhookd
check "config kept" test -f /etc/webhookd/webhookd.toml
check "database kept" test -f /var/lib/webhookd/webhookd.db
check "user kept" getent passwd webhookd

section "apt purge: removes config, data, user and group"
check "apt-get purge exits 0 quietly" quiet_apt purge webhookd
check "package not installed" bash -c "! dpkg-query -W -f='\${Status}' webhookd 2>/dev/null | grep -q installed"
check "/etc/webhookd removed" test ! -e /etc/webhookd
check "/var/lib/webhookd removed" test ! -e /var/lib/webhookd
check "user removed" bash -c "! getent passwd webhookd"
check "group removed" bash -c "! getent group webhookd"
check "unit unknown to systemd ($(prop LoadState))" test "$(prop LoadState)" = not-found
check "no enablement symlink left" test ! -e /etc/systemd/system/multi-user.target.wants/$U
check "no failed units" test -z "$(systemctl list-units --failed --plain --no-legend)"

summary "webhookd package life"
