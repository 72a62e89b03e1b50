#!/bin/sh
# mmdebstrap customize hook for the Serverledge base images; $1 is the root
# filesystem. It strips what a function container never needs at run time,
# pre-compiles the Python standard library so the first import is fast, and
# checks that the interpreter works. scripts/build-images.sh hashes this
# file, so editing it rebuilds the base images.
set -eu
root="$1"

# Perl is only needed by maintainer scripts; nothing is installed after this.
if chroot "$root" dpkg-query -W perl-base >/dev/null 2>&1; then
	chroot "$root" dpkg --purge --force-remove-essential --force-depends perl-base >/dev/null 2>&1
fi

# Pre-compile the Python standard library once, instead of in every container.
# compileall exits non-zero when a single file does not compile (Debian ships
# a few deliberately broken test inputs), so only the smoke test below decides.
for lib in "$root"/usr/lib/python3.*; do
	[ -d "$lib" ] || continue
	ver="${lib##*/}"
	chroot "$root" "/usr/bin/$ver" -m compileall -q -j 0 "/usr/lib/$ver" >/dev/null 2>&1 || true
done

# Smoke test: the interpreter starts and the modules functions rely on load.
if [ -x "$root/usr/bin/python3" ]; then
	chroot "$root" /usr/bin/python3 -c 'import json, ssl, hashlib, sqlite3, ctypes, decimal, zoneinfo, urllib.request, asyncio'
fi
if [ -x "$root/usr/bin/node" ]; then
	chroot "$root" /usr/bin/node -e 'require("crypto"); require("http"); require("zlib")'
fi

# No package manager runs in the image: drop the host's mirror list (mmdebstrap
# cleans the apt lists and caches itself right after this hook) and logs.
rm -rf "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/* \
	"$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
	"$root"/var/log/* "$root"/usr/share/lintian "$root"/usr/share/bash-completion
