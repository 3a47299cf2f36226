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

# A pool of background jobs, for the stage script: "launch [--done DIR SIG] LOG CMD..."
# starts CMD with run_cmd, keeping at most ${max_jobs} running, and logs where to follow
# it; "wait_launched" reports each job as it ends (not in launch order), writes DIR/.done
# (mark_done DIR SIG) for those that succeeded, and stops the recipe (die) naming the
# logs of failed jobs. Messages start with ${launched_what}, the running stage's title.
declare -A launched_log=() launched_done=() launched_sig=()
launched_failed=()
launched_n=0
max_jobs=1
reap_one() { # wait for one launched job to end and record it
    local pid= rc=0
    wait -n -p pid || rc=$?
    [ -n "${pid}" ] || return 0
    if [ "${rc}" -eq 0 ]; then
        [ -z "${launched_done[${pid}]}" ] || mark_done "${launched_done[${pid}]}" "${launched_sig[${pid}]}"
        log "${launched_what}: done (${launched_log[${pid}]})"
    else
        launched_failed+=("${launched_log[${pid}]}")
        log "${launched_what}: job failed, see ${launched_log[${pid}]}:" >&2
        tail -n 15 "${launched_log[${pid}]}" >&2
    fi
    unset "launched_log[${pid}]"
}
launch() {
    local done_dir="" done_sig=""
    if [ "$1" = --done ]; then
        done_dir=$2
        done_sig=$3
        shift 3
    fi
    local log_file=$1
    shift
    while [ "${#launched_log[@]}" -ge "${max_jobs}" ]; do
        reap_one
    done
    run_cmd "${log_file}" "$@" &
    launched_log[$!]=${log_file}
    launched_done[$!]=${done_dir}
    launched_sig[$!]=${done_sig}
    launched_n=$((launched_n + 1))
    log "${launched_what}: started, follow it in ${log_file}"
}
wait_launched() {
    while [ "${#launched_log[@]}" -gt 0 ]; do
        reap_one
    done
    local n=${launched_n} failed=("${launched_failed[@]}")
    launched_failed=()
    launched_n=0
    [ ${#failed[@]} -eq 0 ] || die "${launched_what}: ${#failed[@]} of ${n} jobs failed: ${failed[*]}"
}
