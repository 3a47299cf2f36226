# Usage: sourced by asrser.sh (and by you, to use the recipe's Python by hand).
#
# Puts the project's virtual environment (tools/install.sh) first on PATH, so that
# "python" is the interpreter with espnet, torch and espnet_asrser installed.
_venv=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../../tools/venv" 2>/dev/null && pwd) || {
    echo "path.sh: no virtual environment at ../../../tools/venv; run tools/install.sh first" >&2
    return 1
}
# shellcheck disable=SC1091
. "${_venv}/bin/activate"
unset _venv
# Jobs run side by side (--nj, --train_jobs); one math thread each keeps them from
# oversubscribing the cores. Export a larger value to give a single job more threads.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export MKL_NUM_THREADS=${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}
# Python's output reaches the logs as it is produced, not when a buffer fills.
export PYTHONUNBUFFERED=1
