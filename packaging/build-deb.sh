#!/bin/bash
# Builds the static webhookd binary (x86_64 musl, static-pie) and packages it as a .deb with
# dpkg-deb. Prints the path of the .deb on its last line.
#
# usage: packaging/build-deb.sh [--version-suffix S] [--out DIR]
#   --version-suffix S   append S to the Debian revision (tests build a "higher" package: +up1)
#   --out DIR            where the .deb goes (default: debian/ in cargo's target directory,
#                        $CARGO_TARGET_DIR or target/)
# Needs: rustup target x86_64-unknown-linux-musl, musl-tools, dpkg-dev, binutils, file (checked
# first; .ci/run installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir="$root/$target_dir" ;; esac
suffix="" out="$target_dir/debian"
while [ $# -gt 0 ]; do
    case $1 in
        --version-suffix) suffix=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
target=x86_64-unknown-linux-musl
cd "$root"

# Prerequisites first: without them cargo fails deep inside ("can't find crate for core").
missing=()
if command -v rustup >/dev/null 2>&1; then
    rustup target list --installed 2>/dev/null | grep -qx "$target" || missing+=(target)
elif [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
    missing+=(target)
fi
packages=()
command -v musl-gcc >/dev/null 2>&1 || packages+=(musl-tools)
# jemalloc (the static build's allocator) is built with its configure script and make.
command -v make >/dev/null 2>&1 || packages+=(make)
command -v dpkg-deb >/dev/null 2>&1 || packages+=(dpkg-dev)
command -v objcopy >/dev/null 2>&1 || packages+=(binutils)
command -v file >/dev/null 2>&1 || packages+=(file)
if [ ${#missing[@]} -gt 0 ] || [ ${#packages[@]} -gt 0 ]; then
    echo "build-deb.sh: missing prerequisites; install them with:" >&2
    [ ${#missing[@]} -gt 0 ] && echo "  rustup target add $target" >&2
    [ ${#packages[@]} -gt 0 ] && echo "  sudo apt-get install ${packages[*]}" >&2
    exit 69
fi

cargo build --release --locked --target "$target" --bin webhookd >&2
bin="$target_dir/$target/release/webhookd"
if ! file "$bin" | grep -q 'static-pie linked'; then
    echo "build-deb.sh: $bin is not a static-pie binary: $(file "$bin")" >&2
    exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
debver="$version-1$suffix"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
stage=$(mktemp -d /tmp/webhookd-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin" "$stage/usr/bin/webhookd"
objcopy --remove-section=.comment "$stage/usr/bin/webhookd"
install -D -m 0644 systemd/webhookd.service "$stage/lib/systemd/system/webhookd.service"
install -D -m 0644 systemd/webhookd.sysusers "$stage/usr/lib/sysusers.d/webhookd.conf"
install -D -m 0644 systemd/webhookd.tmpfiles "$stage/usr/lib/tmpfiles.d/webhookd.conf"
install -D -m 0644 etc/webhookd.toml "$stage/etc/webhookd/webhookd.toml"
install -D -m 0644 packaging/debian/copyright "$stage/usr/share/doc/webhookd/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/webhookd"
doc="$stage/usr/share/doc/webhookd"
sed "1s/(.*)/($debver)/" packaging/debian/changelog | gzip -9n >"$doc/changelog.Debian.gz"
for page in man/*.[1-8]; do
    [ -e "$page" ] || continue
    sec=${page##*.}
    install -d "$stage/usr/share/man/man$sec"
    gzip -9n <"$page" >"$stage/usr/share/man/man$sec/$(basename "$page").gz"
done
for shell in bash zsh fish; do
    case $shell in
        bash) dest=usr/share/bash-completion/completions/webhookd ;;
        zsh) dest=usr/share/zsh/vendor-completions/_webhookd ;;
        fish) dest=usr/share/fish/vendor_completions.d/webhookd.fish ;;
    esac
    install -d "$stage/$(dirname "$dest")"
    "$bin" completions "$shell" >"$stage/$dest"
    chmod 0644 "$stage/$dest"
done
install -d "$stage/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$stage/DEBIAN/$s"; done
echo /etc/webhookd/webhookd.toml >"$stage/DEBIAN/conffiles"
size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: webhookd
Version: $debver
Architecture: amd64
Maintainer: webhookd maintainers <maintainers@webhookd.invalid>
Installed-Size: $size
Depends: systemd | systemd-standalone-sysusers | systemd-sysusers, init-system-helpers (>= 1.54~)
Recommends: ca-certificates
Section: net
Priority: optional
Homepage: https://webhookd.invalid/
Description: reliable outbound webhook delivery with an embedded SQLite queue
 webhookd stores outgoing webhooks durably in a local SQLite file and delivers
 them with a pool of worker threads: retries with exponential backoff and
 jitter, Retry-After, a dead-letter queue that can be inspected, edited and
 retried. One static binary, run by systemd (Type=notify, watchdog, reload).
CONTROL
(cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
    LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"
find "$stage" -depth -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/webhookd_${debver}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
