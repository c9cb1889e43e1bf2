#!/usr/bin/env bash
# Installs everything hypr needs on a fresh Debian 12 machine; safe to run again.
#  - Debian packages (QEMU, nftables, dnsmasq, busybox, musl, ...) with apt-get
#  - a virtualenv in .venv/ with hypr and its Python dependencies
#  - the guest assets (kernel, initramfs with the agent, built-in busybox image)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: run as root (apt-get, network namespaces)" >&2
    exit 1
fi

APT_PACKAGES=(
    qemu-system-x86 busybox-static musl-tools cpio squashfs-tools e2fsprogs
    nftables python3-nftables dnsmasq-base dnsmasq-utils dnsutils iproute2 iputils-ping curl
    dnsperf iperf3 dpkg-dev lz4 binutils
    squashfs-tools-ng skopeo umoci docker-registry mmdebstrap apache2-utils docker-compose
    haproxy wrk buildah openssh-client
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.hypr-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing Python packages into .venv"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
# The nftables binding is Debian's (libnftables through ctypes); PyPI has none.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn /usr/lib/python3/dist-packages/nftables "$site/nftables"

.venv/bin/python -m hypr_build --out .venv/share/hypr
