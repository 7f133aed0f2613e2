#!/usr/bin/env bash
# Install what webinfra needs on Debian 12, without starting the distribution's own copies of the daemons
# (webinfra runs its own instances inside emulated hosts and must not disturb the machine's services).
#   scripts/install-deps.sh          runtime packages
#   scripts/install-deps.sh --test   runtime + what the test suite needs (includes the lab's packages)
#   scripts/install-deps.sh --lab    runtime + what `webinfra lab` needs (Debian 12 machines in containers)
set -euo pipefail

RUNTIME=(haproxy nginx mariadb-server mariadb-client mariadb-backup keepalived etcd-server etcd-client nftables iproute2 iputils-ping procps python3 python3-venv python3-pip wrk curl ca-certificates)
# Monitoring: Prometheus (with promtool) and Alertmanager (with amtool) on the monitoring host, the exporters
# on every host (nginx's reads its stub_status page).
RUNTIME+=(prometheus prometheus-alertmanager prometheus-node-exporter prometheus-mysqld-exporter prometheus-nginx-exporter)
# The suite also drops privileges (setpriv, util-linux) and reads sockets (ss, iproute2): already above;
# the security tests scan ports (nmap) and TLS (sslscan) from the client side.
TEST=()
[ "${1:-}" = "--test" ] && TEST=(util-linux nmap sslscan)
# The dashboard's test drives Debian's Chromium (through the playwright Python package; no browser download).
[ "${1:-}" = "--test" ] && TEST+=(chromium)
# The lab (`webinfra lab`, and its tests): mmdebstrap builds the Debian 12 root file system, systemd-nspawn
# boots it, apt-cacher-ng on the bridge's gateway is the machines' only way to packages, ssh-keygen/ssh reach them.
LAB=(mmdebstrap systemd-container apt-cacher-ng openssh-client)
case "${1:-}" in --test|--lab) TEST+=("${LAB[@]}") ;; esac

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (it installs Debian packages and creates network namespaces)" >&2
  exit 2
fi

missing=()
for pkg in "${RUNTIME[@]}" "${TEST[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing Debian packages: ${missing[*]}"
# Keep the packages' own services from starting: a temporary policy-rc.d (only if none exists).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { [ "$created_policy" = 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# On machines with systemd, keep the units of packages installed just now from starting at boot
# (units of packages the machine already had are left as they were).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for pkg in "${missing[@]}"; do
    case "$pkg" in
      haproxy|nginx|keepalived|prometheus|prometheus-alertmanager|prometheus-node-exporter|prometheus-mysqld-exporter|prometheus-nginx-exporter)
        systemctl disable "$pkg" >/dev/null 2>&1 || true ;;
      mariadb-server) systemctl disable mariadb >/dev/null 2>&1 || true ;;
      etcd-server) systemctl disable etcd >/dev/null 2>&1 || true ;;
      apt-cacher-ng) systemctl disable apt-cacher-ng >/dev/null 2>&1 || true ;;
    esac
  done
fi
