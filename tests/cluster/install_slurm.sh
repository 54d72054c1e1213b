#!/usr/bin/env bash
# Install the Debian packages of a one-node SLURM with accounting (slurm-wlm, munge, slurmdbd, mariadb-server) for the
# cluster tests. Root only. Does nothing when they are all installed already. Takes ~25-40 s on a fresh Debian 12.
# apt must not start the daemons itself (start_cluster.sh starts them and stop_cluster.sh stops them by PID): where no
# /usr/sbin/policy-rc.d exists, a temporary one that denies service starts is in place during the install.
set -euo pipefail
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
BINARIES=(/usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/slurmdbd /usr/sbin/munged /usr/sbin/mariadbd /usr/bin/mariadb-install-db /usr/bin/sbatch /usr/bin/sacct)

all_installed() {
  local binary
  for binary in "${BINARIES[@]}"; do [ -x "$binary" ] || return 1; done
}

if all_installed; then
  echo "SLURM, munge, slurmdbd and MariaDB are installed already"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install_slurm.sh: must run as root to install ${PACKAGES[*]}" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "install_slurm.sh: no apt-get on this machine (a Debian/Ubuntu is needed)" >&2; exit 1; }

POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# temporary, from ifmsan tests/cluster/install_slurm.sh: apt starts no services\nexit 101\n' >"$POLICY"
  chmod 0755 "$POLICY"
  OWN_POLICY=1
fi
cleanup() { if [ "$OWN_POLICY" = 1 ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
APT_OPTIONS=(-q -o Acquire::Retries=2 -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30)
apt-get "${APT_OPTIONS[@]}" update
apt-get "${APT_OPTIONS[@]}" install -y --no-install-recommends "${PACKAGES[@]}"
all_installed || { echo "install_slurm.sh: the packages installed but a daemon binary is missing" >&2; exit 1; }
echo "installed ${PACKAGES[*]}"
