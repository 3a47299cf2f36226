# Usage: sourced by asrser.sh, which starts every job (feature dumping, training,
# decoding) as
#     run_cmd <log file> [--gpu N] <command> [arguments...]
# run_cmd returns the command's exit status; the log file gets the command line, its
# output, and the start and end times.
#
# cmd_backend (or the environment variable CMD_BACKEND) says where jobs run:
#   local  on this machine (default);
#   slurm  as Slurm jobs through srun, which waits for the job to end, so the recipe
#          runs unchanged; slurm_opts (or SLURM_OPTS) holds the options for your site,
#          e.g. SLURM_OPTS="--partition=gpu --time=48:00:00 --mem=32G". Jobs with
#          --gpu N also get --gres=gpu:N.
# Up to --nj (--train_jobs for trainings) jobs are started side by side either way.
cmd_backend=${CMD_BACKEND:-local}
slurm_opts=${SLURM_OPTS:---cpus-per-task=2 --mem=16G}

run_cmd() {
    local log=$1 ngpu=0 rc=0
    shift
    if [ "$1" = --gpu ]; then
        ngpu=$2
        shift 2
    fi
    mkdir -p "$(dirname "${log}")"
    {
        echo "# $*"
        echo "# started at $(date '+%Y-%m-%dT%H:%M:%S')"
    } >"${log}"
    case ${cmd_backend} in
        local)
            "$@" >>"${log}" 2>&1 || rc=$?
            ;;
        slurm)
            local gres=()
            [ "${ngpu}" -gt 0 ] && gres=(--gres="gpu:${ngpu}")
            # shellcheck disable=SC2086  # slurm_opts is a list of options
            srun --job-name="$(basename "${log}" .log)" ${slurm_opts} "${gres[@]}" \
                "$@" >>"${log}" 2>&1 || rc=$?
            ;;
        *)
            echo "cmd.sh: unknown cmd_backend '${cmd_backend}'; use local or slurm" >>"${log}"
            rc=1
            ;;
    esac
    echo "# ended at $(date '+%Y-%m-%dT%H:%M:%S') with status ${rc}" >>"${log}"
    return "${rc}"
}
