#!/usr/bin/env bash
# Shared by install.sh and test.sh: system packages + the project venv (.venv) with gpulab and the pip
# extras named in $1 (comma-separated: `lab` for install.sh, `test` for test.sh). Needs root on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

# podman+runc run the lab/test containers (crun fails on these hosts' hybrid cgroups); debootstrap builds
# their base images; python3-venv makes .venv on a stock Debian/Ubuntu python3; openssh-client is the
# ssh (Ansible's connection to the lab's nodes) and ssh-keygen (the lab's key pair) that minimal images lack.
apt_packages=(python3 python3-venv podman runc debootstrap slirp4netns fuse-overlayfs uidmap ca-certificates
  openssh-client)
# The tests drive a real headless browser over the HTML report (selenium + Debian's chromium/chromedriver).
if [[ ",$extras," == *,test,* ]]; then
  apt_packages+=(chromium chromium-driver)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "gpulab: installing system packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "gpulab: run this as root (it installs ${missing[*]} with apt-get)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
