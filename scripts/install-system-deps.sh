#!/usr/bin/env bash
# Installs the Debian packages that graylane's tests, demo and benchmarks use: nginx and wrk
# (benchmarks against a reference proxy), redis-server (global rate limits), curl, prometheus,
# and a C toolchain when there is none (to build the Cython extensions).
#
# Idempotent and quick when everything is there. Without root or password-less sudo, or on a
# system without apt, it prints what is missing and exits 0: the tests that need a package say so.
set -euo pipefail

packages=(nginx-light wrk redis-server curl prometheus)
command -v gcc >/dev/null 2>&1 || packages+=(build-essential)
python=${PYTHON:-python3}
include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)
[[ -n $include && -f $include/Python.h ]] || packages+=(python3-dev)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: no apt on this system; graylane's tests may use: ${packages[*]}"
    exit 0
fi

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
    [[ $status == ii* ]] || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
    echo "system-deps: all present (${packages[*]})"
    exit 0
fi

if ((EUID == 0)); then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "system-deps: missing ${missing[*]}; install them with:"
    echo "    sudo apt-get install ${missing[*]}"
    exit 0
fi

# Packages must not start their daemons: tests start their own servers on loopback ports, and a
# system nginx/redis/prometheus would hold ports 80/6379/9090. policy-rc.d exit 101 = "do not start".
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

echo "system-deps: installing ${missing[*]}"
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
if "${apt[@]}" update >/dev/null \
    && "${apt[@]}" install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null; then
    echo "system-deps: installed ${missing[*]}"
else
    echo "system-deps: WARNING: apt-get could not install ${missing[*]}; tests that need them will fail or skip" >&2
fi
