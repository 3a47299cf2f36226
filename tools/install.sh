#!/usr/bin/env bash
# Usage: tools/install.sh            # creates tools/venv and installs espnet-asrser into it
#        PYTHON=python3.11 tools/install.sh
#
# Makes a virtual environment at tools/venv with the pinned dependency set of setup.py and
# this package installed in editable mode (plus pytest). Needs only Python >= 3.10 with
# venv and network access to PyPI; no root. A second run compares a fingerprint of
# setup.py and returns in about a second when nothing changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${root}/tools/venv
python=${PYTHON:-python3}
stamp=${venv}/.espnet_asrser_installed

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (install.sh) $*"; }

fingerprint=$(cat "${root}/setup.py" | sha256sum | cut -d' ' -f1)
if [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${fingerprint}" ] \
    && "${venv}/bin/python" -c "import espnet_asrser, espnet2, torch" 2>/dev/null; then
    log "tools/venv is up to date (delete ${stamp} to force a reinstall)."
    exit 0
fi

if [ ! -x "${venv}/bin/python" ]; then
    log "Creating ${venv} with $(${python} --version 2>&1)"
    "${python}" -m venv "${venv}"
fi
# pip 26 refuses espnet's direct-URL dependency ci_sdr; 23-25 install it.
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "pip>=23,<26"
log "Installing espnet-asrser and its pinned dependencies (about 5 GB on first run)"
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -e "${root}[test]"
echo "${fingerprint}" > "${stamp}"
log "Done: activate with 'source tools/venv/bin/activate'"
