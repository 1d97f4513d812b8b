#!/usr/bin/env bash
# scripts/lwip-source.sh - fetch lwIP's Debian source package into
# dataplane/lwip/debian-src, for the DPDK dataplane's own lwIP build (docs/dpdk.md).
#
# Debian's liblwip is built for the Hurd: no window scaling, no SACK, a
# 64 KiB window, software checksums. The same source, built with our
# dataplane/lwip/lwipopts.h, has all of those. This takes the source of the
# installed liblwip-dev version from Debian's archive (apt checks it against
# the signed Sources index, dpkg-source against the .dsc), unpacks it with
# Debian's patches applied, then applies ours (dataplane/lwip/patches: the
# sender's SACK recovery, a SYN ending TIME-WAIT). DIR/.circnet-version records the
# version and our patches' hashes; when either changes, it starts afresh.
# Idempotent; needs root only to add the deb-src entry the first time.
# Usage: lwip-source.sh [--check] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then
	check=1
	shift
fi
dir=${1:-dataplane/lwip/debian-src}
want=$(dpkg-query -W -f='${Version}' liblwip-dev 2>/dev/null || true)
if [ -z "$want" ]; then
	echo "lwip-source: liblwip-dev is not installed (scripts/deps.sh installs it)" >&2
	exit 1
fi
patches=(dataplane/lwip/patches/*.patch)
# the stamp: the version, then each patch's sha256 (meson.build reads it too)
stamp=$(
	echo "$want"
	for p in "${patches[@]}"; do sha256sum "$p" | cut -d' ' -f1; done
)
if [ -f "$dir/src/core/tcp.c" ] && [ "$(cat "$dir/.circnet-version" 2>/dev/null)" = "$stamp" ]; then
	echo "lwip-source: $dir holds lwip $want with our ${#patches[@]} patch(es)"
	exit 0
fi
if [ $check = 1 ]; then
	echo "lwip-source: $dir does not hold lwip $want with our current patches" >&2
	exit 1
fi
for tool in apt-get dpkg-source patch; do
	command -v $tool >/dev/null || {
		echo "lwip-source: $tool is missing (scripts/deps.sh installs dpkg-dev)" >&2
		exit 1
	}
done

# a deb-src entry for the archive the binary packages come from
if ! apt-get source --print-uris -qq "lwip=$want" >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "lwip-source: no deb-src entry for lwip $want; run as root once to add one" >&2
		exit 1
	fi
	uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	cat >/etc/apt/sources.list.d/circnet-deb-src.sources <<SRC
# added by circnet scripts/lwip-source.sh: lwIP's source for the DPDK dataplane
Types: deb-src
URIs: ${uri:-http://deb.debian.org/debian}
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	echo "lwip-source: added /etc/apt/sources.list.d/circnet-deb-src.sources (remove it to undo)"
	apt-get update -qq
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get source -qq --download-only "lwip=$want" &&
	dpkg-source -x ./*.dsc src) >"$tmp/log" 2>&1 || {
	echo "lwip-source: fetching or unpacking lwip $want failed:" >&2
	tail -5 "$tmp/log" >&2
	exit 1
}
# apt verified the files against the signed index, dpkg-source the .dsc's
# sizes and hashes (its own signature check wants debian-keyring: a warning)
for p in "${patches[@]}"; do
	patch -d "$tmp/src" -p1 --forward --no-backup-if-mismatch --quiet <"$p" >"$tmp/log" 2>&1 || {
		echo "lwip-source: $p does not apply to lwip $want:" >&2
		tail -5 "$tmp/log" >&2
		exit 1
	}
done
# the tarball's dates are old: a build tree must see a new source as new
find "$tmp/src" -type f -exec touch {} +
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mv "$tmp/src" "$dir"
echo "$stamp" >"$dir/.circnet-version"
echo "lwip-source: unpacked lwip $want into $dir, with ${#patches[@]} patch(es) of ours"
