#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine: system packages + the project virtualenv (.venv).
# Usage: bash scripts/setup.sh        (re-running only installs what is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need_apt=()
dpkg -s python3-venv >/dev/null 2>&1 || need_apt+=(python3-venv)
dpkg -s python3-dev >/dev/null 2>&1 || need_apt+=(python3-dev)
# QGIS 3.22 from Debian for the plugin and its tests (PyQGIS + the qgis_process runner).
dpkg -s python3-qgis >/dev/null 2>&1 || need_apt+=(python3-qgis)
dpkg -s qgis >/dev/null 2>&1 || need_apt+=(qgis)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# Debian's interpreter, with system site-packages so that the QGIS plugin tests can share the venv.
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

stamp="$VENV/.installed-$(sha256sum requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into $VENV (torch is ~5 GB the first time)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements-dev.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
"$VENV/bin/python" -c "import torch, torchvision, rasterio, shapely, pycocotools, fiona; print('setup: engine OK, torch', torch.__version__, 'torchvision', torchvision.__version__)" >&2
QT_QPA_PLATFORM=offscreen "$VENV/bin/python" -c "from qgis.core import Qgis; print('setup: QGIS', Qgis.QGIS_VERSION)" 2>/dev/null >&2
