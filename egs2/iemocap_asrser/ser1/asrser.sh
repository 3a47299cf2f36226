#!/usr/bin/env bash
# Usage: ./asrser.sh [options]     (normally through ./run.sh, which sets the defaults)
#
# IEMOCAP four-class speech emotion recognition combined with acoustic-to-word (A2W) ASR,
# after Feng, Ueno and Kawahara (Interspeech 2020). Every stage can run alone; a stage
# whose outputs are up to date with its inputs does nothing.
#   1  IEMOCAP data directories and folds        data/iemocap_all, data/iemocap_fold<k>_*
#   2  LibriSpeech data directories              data/train_960 (or train_libri), ...
#   3  40-dim log-mel features                   dump/fbank/<set>
#   4  word token list, IEMOCAP OOV rate         data/token_list/word
#   5  ASR normalisation statistics and shapes   exp/asr_stats_<train set>
#   6  A2W ASR pre-training                      exp/asr_<asr config>
#      (with --asr_pre_config, first its encoder) exp/asr_<pre config>
#      (--pretrained_asr: unpack and check it)   exp/asr_pretrained_<name>
#   7  ASR decoding and WER: LibriSpeech test sets, IEMOCAP zero-shot
#   8  SER statistics and shapes, per fold       exp/ser_stats_fold<k>(_raw)
#   9  SER baselines per fold: audio, text, combined       exp/ser_fold<k>_<config>
#  10  ASR-SER joint fine-tuning per fold                  exp/ser_fold<k>_<config>
#      (--pretrained_asr: ..._pretrained_<name>, from waveforms)
#  11  inference and scoring per fold and pooled           exp/ser_results
#  12  RESULTS.md and packed models                        RESULTS.md, exp/packed
#
# Options (--name value; "-" and "_" are the same in names: --stop-stage = --stop_stage):
#   --stage N --stop_stage N     first and last stage to run (1, 12)
#   --ngpu N                     GPUs per training job; decoding uses one if N > 0 (0)
#   --nj N                       parallel jobs for dumping, decoding and inference (4)
#   --train_jobs N               trainings run side by side (folds are independent)
#                                (1; 2 on the mini corpora, whose CPU trainings use one
#                                thread each, so that two cores are both busy)
#   --folds "1 2 3 4 5"          cross-validation folds to train and score
#   --subset all|improvised --protocol speaker_independent|speaker_dependent
#   --exc merge|drop --max_dur 20          IEMOCAP selection (local/prepare_iemocap.py)
#   --emotion_classes "ang hap neu sad"    label set, in output order
#   --resample false --downmix false       convert audio at another rate / with several
#                                channels (stages 1-3) instead of stopping at it
#   --drop_incomplete false      leave out, and list in dump/fbank/<set>/dropped_utts,
#                                utterances a table lacks (stage 3) instead of stopping
#   --mini_size default|tiny     size of the generated corpora when db.sh is empty
#   --libri_valid_set dev_clean  --libri_test_sets "test_clean test_other"
#   --word_vocab_size N          entries of the word token list (see run.sh)
#   --conf_dir DIR               where the configs are looked for (conf; conf/mini when
#                                the generated mini corpora are used)
#   --asr_config --decode_config --audio_config --text_config --combined_config
#   --asrser_config FILE         one config each (default <conf_dir>/train_a2w.yaml,
#                                decode_asr.yaml, train_audio.yaml, ...)
#   --asr_args --ser_args --decode_args "..."  extra options for ESPnet's trainers and
#                                decoders; they become part of the experiment names
#   --asr_model valid.acc.ave.pth --ser_model valid.acc_ser.best.pth   checkpoints used
#   --asr_pre_config FILE        character-CTC pre-training of the A2W encoder (stage 6):
#                                its valid.loss.best.pth initialises the A2W encoder
#                                (--init_param ...:encoder:encoder), which the A2W config
#                                may keep frozen (freeze_param). Default
#                                <conf_dir>/pretrain_encoder_ctc.yaml when it exists (the
#                                mini corpora), none otherwise (the paper); "none": none
#   --asrser_ablations "FILE ..." ASR-SER variants trained, scored and reported beside
#                                ASR-SER (stages 10-12); FILE is an ASR-SER config named
#                                train_asrser_<name>.yaml (system asrser_<name>) whose first
#                                line "# ablation: <text>" labels it. Default
#                                <conf_dir>/ablation/train_asrser_*.yaml; "none": none
#   --pretrained_asr SPEC        start from a trained ESPnet ASR model instead of our A2W
#                                model: a zip of `espnet2.bin.pack asr` (as the model zoo
#                                serves them), its unpacked directory (with meta.yaml), or
#                                CONFIG,MODEL. Stages 5 and 6 then train nothing; stage 7
#                                decodes with it, and the ASR-SER model (stage 10) takes
#                                its config, weights and tokenizer and reads waveforms
#                                (data/<set>/wav.scp). Its experiments are named after it
#                                (exp/asr_pretrained_<name>, ..._pretrained_<name>), so runs
#                                with our A2W and with it share one recipe directory, and
#                                RESULTS.md shows both. Model-zoo names are not downloaded.
#                                Sub-word (BPE) models: --asrser_config
#                                conf/zoo/train_asrser.yaml gives one ASR feature per word.
#   --pretrained_asr_config FILE --pretrained_asr_model FILE   the same as
#                                --pretrained_asr FILE,FILE
#
# Corpora: IEMOCAP and LIBRISPEECH in db.sh or the environment (both empty: generated mini
# corpora). Where jobs run: CMD_BACKEND=local|slurm and SLURM_OPTS (cmd.sh).

set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
die() {
    log "ERROR: $*" >&2
    exit 1
}
SECONDS=0
help_message=$(awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0")

stage=1
stop_stage=12
ngpu=0
nj=4
train_jobs=
folds="1 2 3 4 5"
subset=all
protocol=speaker_independent
exc=merge
max_dur=20
resample=false
downmix=false
drop_incomplete=false
emotion_classes="ang hap neu sad"
mini_size=default
libri_valid_set=dev_clean
libri_test_sets="test_clean test_other"
word_vocab_size=47465
conf_dir=
asr_config=
decode_config=
audio_config=
text_config=
combined_config=
asrser_config=
asr_args=
ser_args=
decode_args=
asr_model=valid.acc.ave.pth
ser_model=valid.acc_ser.best.pth
asr_pre_config=
asrser_ablations=
pretrained_asr=
pretrained_asr_config=
pretrained_asr_model=

. local/parse_options.sh
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. ./path.sh
. ./cmd.sh
. ./db.sh

# ------------------------------------------------------------------ settings and names
use_mini=false
if [ -z "${IEMOCAP}" ] && [ -z "${LIBRISPEECH}" ]; then
    use_mini=true
    mini_dir=corpora/mini/${mini_size}
    IEMOCAP=${PWD}/${mini_dir}/IEMOCAP_full_release
    LIBRISPEECH=${PWD}/${mini_dir}/LibriSpeech
    log "IEMOCAP and LIBRISPEECH are empty in db.sh: using the synthetic mini corpora" \
        "(--mini_size ${mini_size}) in ${mini_dir}, made by local/make_mini_corpora.py." \
        "Their numbers test the recipe, not the paper's claims on real speech."
fi
conf_dir=${conf_dir:-$(${use_mini} && echo conf/mini || echo conf)}
asr_config=${asr_config:-${conf_dir}/train_a2w.yaml}
decode_config=${decode_config:-${conf_dir}/decode_asr.yaml}
audio_config=${audio_config:-${conf_dir}/train_audio.yaml}
text_config=${text_config:-${conf_dir}/train_text.yaml}
combined_config=${combined_config:-${conf_dir}/train_combined.yaml}
asrser_config=${asrser_config:-${conf_dir}/train_asrser.yaml}
# Encoder pre-training and ablations: from conf_dir unless given; "none" switches them off.
if [ -z "${asr_pre_config}" ] && [ -f "${conf_dir}/pretrain_encoder_ctc.yaml" ]; then
    asr_pre_config=${conf_dir}/pretrain_encoder_ctc.yaml
fi
[ "${asr_pre_config}" != none ] || asr_pre_config=
if [ -z "${asrser_ablations}" ]; then
    asrser_ablations=$(ls "${conf_dir}"/ablation/train_asrser_*.yaml 2>/dev/null || true)
fi
[ "${asrser_ablations}" != none ] || asrser_ablations=
for f in "${asr_config}" "${decode_config}" "${audio_config}" "${text_config}" \
    "${combined_config}" "${asrser_config}" ${asr_pre_config} ${asrser_ablations}; do
    [ -f "${f}" ] || die "config ${f} does not exist"
done
if [ -n "${pretrained_asr_config}${pretrained_asr_model}" ]; then
    [ -z "${pretrained_asr}" ] || die "give --pretrained_asr or" \
        "--pretrained_asr_config/--pretrained_asr_model, not both"
    [ -f "${pretrained_asr_config}" ] && [ -f "${pretrained_asr_model}" ] ||
        die "--pretrained_asr_config and --pretrained_asr_model must both name files"
    pretrained_asr=${pretrained_asr_config},${pretrained_asr_model}
fi
# The pretrained ASR: its path made absolute (so that the experiments' configs and
# fingerprints do not depend on how it was written), its name (for its experiments),
# and the files whose contents stand for it in the fingerprints.
pretrained=false
if [ -n "${pretrained_asr}" ]; then
    pretrained=true
    if [[ ${pretrained_asr} == *,* ]]; then
        for f in "${pretrained_asr%%,*}" "${pretrained_asr#*,}"; do
            [ -f "${f}" ] || die "--pretrained_asr ${pretrained_asr}: ${f} does not exist" \
                "(CONFIG,MODEL: an ESPnet ASR config.yaml and its .pth)"
        done
        pretrained_asr=$(realpath -s "${pretrained_asr%%,*}"),$(realpath -s "${pretrained_asr#*,}")
        pretrained_files=("${pretrained_asr%%,*}" "${pretrained_asr#*,}")
        pretrained_name=$(basename "$(dirname "$(realpath "${pretrained_files[1]}")")")
    elif [ -d "${pretrained_asr}" ]; then
        [ -f "${pretrained_asr}/meta.yaml" ] || die "--pretrained_asr ${pretrained_asr} is a" \
            "directory without meta.yaml: give an unpacked model-zoo archive, or CONFIG,MODEL"
        pretrained_asr=$(realpath -s "${pretrained_asr}")
        pretrained_files=("${pretrained_asr}/meta.yaml")
        # And the config and weights that meta.yaml names: a directory can be updated
        # (git pull) without a new meta.yaml.
        while read -r f; do
            pretrained_files+=("${pretrained_asr}/${f}")
        done < <(sed -n 's/^ *asr_\(model_file\|train_config\): *//p' "${pretrained_files[0]}")
        pretrained_name=$(basename "${pretrained_asr}")
    elif [ -f "${pretrained_asr}" ]; then
        pretrained_asr=$(realpath -s "${pretrained_asr}")
        pretrained_files=("${pretrained_asr}")
        pretrained_name=$(basename "${pretrained_asr}")
        pretrained_name=${pretrained_name%.zip}
        pretrained_name=${pretrained_name%.tgz}
        pretrained_name=${pretrained_name%.tar.gz}
    else
        die "--pretrained_asr ${pretrained_asr} is neither a local archive (.zip, .tar.gz)," \
            "an unpacked archive directory (with meta.yaml) nor CONFIG,MODEL. Model-zoo" \
            "names are not downloaded here. On a machine with network access," \
            "python -c \"from espnet_model_zoo.downloader import ModelDownloader as D;" \
            "print(D().download('${pretrained_asr}'))\" fetches the model and prints where" \
            "it is (a zip, or a Hugging Face directory with meta.yaml); copy that here and" \
            "pass its local path as --pretrained_asr"
    fi
    pretrained_name=$(echo "${pretrained_name}" | sed 's/[^A-Za-z0-9_-]/_/g')
fi
if [ -z "${train_jobs}" ]; then
    train_jobs=1
    ${use_mini} && train_jobs=2
fi
[[ ${nj} =~ ^[1-9][0-9]*$ ]] && [[ ${train_jobs} =~ ^[1-9][0-9]*$ ]] ||
    die "--nj and --train_jobs take whole numbers >= 1, got '${nj}' and '${train_jobs}'"
for k in ${folds}; do
    [[ ${k} =~ ^[1-5]$ ]] || die "--folds takes fold numbers 1 to 5, got '${k}'"
done

# Experiment names come from the config path below conf/ and the extra arguments, so
# conf/mini/train_a2w.yaml with --asr_args "--max_epoch 3" trains exp/asr_mini_train_a2w_max_epoch3.
config_tag() {
    local tag=${1#conf/}
    tag=${tag%.yaml}
    tag=${tag//\//_}
    echo "${tag}$(echo "$2" | sed -e 's/--/_/g' -e 's/[ =\/]//g')"
}
# The IEMOCAP selection names the data and the SER experiments, so that other settings
# never overwrite the default one: data/iemocap_improvised_fold1_train, exp/ser_improvised_...
setting=
[ "${subset}" = all ] || setting+="_${subset}"
[ "${protocol}" = speaker_independent ] || setting+="_${protocol}"
[ "${exc}" = merge ] || setting+="_exc${exc}"
[ "${max_dur}" = 20 ] || setting+="_maxdur${max_dur}"
iemocap=iemocap${setting}
ser_prefix=exp/ser${setting}
results_dir=${ser_prefix}_results
token_dir=data/token_list/word
token_list=${token_dir}/tokens.txt
char_token_list=data/token_list/char/tokens.txt
ngpu_decode=$((ngpu > 0 ? 1 : 0))

# The LibriSpeech training set is train_960 when the three training subsets are there,
# train_libri otherwise (local/prepare_librispeech.py records which).
libri_train_set() {
    python -c 'import json, sys; print(json.load(open(sys.argv[1]))["train_set"] or "")' \
        data/.librispeech.done 2>/dev/null || true
}
libri_sets() {
    local s
    for s in $(libri_train_set) ${libri_valid_set} ${libri_test_sets}; do
        [ ! -d "data/${s}" ] || echo "${s}"
    done
}

# The ASR model: our A2W model (stage 6), or a pretrained one. Whatever depends on it
# (its decodings, the ASR-SER experiments, their results) carries asr_key in its name, so
# that both kinds of run coexist; our A2W keeps the plain names.
# Where the ASR (and ASR-SER) read their input: our A2W the dumped log-mel features, a
# pretrained model the waveforms, which its own frontend turns into its own features.
fbank=(dump/fbank feats.scp,speech,kaldi_ark)
raw=(data wav.scp,speech,sound)
if ${pretrained}; then
    asr_key=pretrained_${pretrained_name}
    asr_suffix=_${asr_key}
    asr_label="pretrained: ${pretrained_name}"
    asr_exp=exp/asr_${asr_key}
    asr_train_config=${asr_exp}/config.yaml
    asr_model_file=${asr_exp}/model.pth
    asr_input=("${raw[@]}")
else
    asr_key=a2w
    asr_suffix=
    asr_label=A2W
    asr_exp=exp/asr_$(config_tag "${asr_config}" "${asr_args}")
    if [ -n "${asr_pre_config}" ]; then
        asr_pre_exp=exp/asr_$(config_tag "${asr_pre_config}" "")
        asr_pre_model=${asr_pre_exp}/valid.loss.best.pth
    fi
    asr_train_config=${asr_exp}/config.yaml
    asr_model_file=${asr_exp}/${asr_model}
    asr_input=("${fbank[@]}")
fi
decode_tag=$(config_tag "${decode_config}" "${decode_args}")
asr_decode_dir=${asr_exp}/decode_${decode_tag}_${asr_model_file##*/}
asr_decode_dir=${asr_decode_dir%.pth}

# SER systems that are trained: the three baselines, ASR-SER and its ablations
# (asrser_<name> from train_asrser_<name>.yaml, labelled by its "# ablation:" line).
declare -A ser_config=([audio]=${audio_config} [text]=${text_config}
    [combined]=${combined_config} [asrser]=${asrser_config})
declare -A ablation_label=()
ablations=()
for f in ${asrser_ablations}; do
    name=$(basename "${f}" .yaml)
    [[ ${name} == train_asrser_* ]] || die "ablation config ${f}: the name must be" \
        "train_asrser_<name>.yaml"
    name=asrser_${name#train_asrser_}
    label=$(sed -n '1s/^# ablation: *//p' "${f}")
    [ -n "${label}" ] || die "ablation config ${f}: its first line must be '# ablation: <text>'"
    ser_config[${name}]=${f}
    ablation_label[${name}]=${label}
    ablations+=("${name}")
done
ser_mode() { # ser_mode SYSTEM: the model's --mode (ASR-SER ablations are asrser)
    case $1 in asrser*) echo asrser ;; *) echo "$1" ;; esac
}
ser_exp() { # ser_exp SYSTEM FOLD
    local suffix=
    [ "$(ser_mode "$1")" != asrser ] || suffix=${asr_suffix}
    echo "${ser_prefix}_fold${2}_$(config_tag "${ser_config[$1]}" "${ser_args}")${suffix}"
}

# ------------------------------------------------------------------ step bookkeeping
# A step's .done marker holds a fingerprint of its inputs (command line and file
# contents); the step is skipped while the fingerprint is unchanged.
# Files are recognised in the words themselves, before a comma (ESPnet's
# path,name,type) or a colon (path::asr) and after an equals sign (stats_file=path).
# Comment lines of YAML files do not count: editing a config's comments retrains nothing.
fingerprint() { # fingerprint WORDS...: the words, then the md5 sums of the files they name
    local w f
    echo "$*"
    for w in "$@"; do
        for f in "${w}" "${w%%,*}" "${w%%:*}" "${w#*=}"; do
            [ -f "${f}" ] || continue
            case ${f} in
                *.yaml) grep -v -E '^[[:space:]]*(#|$)' "${f}" | md5sum | sed "s|-\$|${f}|" ;;
                *) md5sum "${f}" ;;
            esac
        done
    done | awk '!seen[$0]++'
}
is_done() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]; }
mark_done() {
    mkdir -p "$1"
    printf '%s\n' "$2" >"$1/.done"
}
# A training directory with another fingerprint holds a model of other settings; it is
# never overwritten silently.
check_exp() {
    if [ -f "$1/.done" ] && [ "$(cat "$1/.done")" != "$2" ]; then
        die "$1 holds a model trained with other settings (see $1/.done); remove it, or" \
            "give the new settings another config name"
    fi
}

# Background jobs: "launch [--done DIR SIG] LOG CMD..." starts CMD with run_cmd
# (cmd.sh), keeping at most ${max_jobs} running; "wait_launched WHAT" waits for them all,
# logging progress, writes DIR/.done for those that succeeded, and stops the recipe
# naming the logs of failed jobs.
launched_pids=()
launched_logs=()
launched_done=()
launched_sigs=()
max_jobs=1
launch() {
    local done_dir="" done_sig=""
    if [ "$1" = --done ]; then
        done_dir=$2
        done_sig=$3
        shift 3
    fi
    local log_file=$1
    shift
    while [ "$(jobs -rp | wc -l)" -ge "${max_jobs}" ]; do
        wait -n || true
    done
    run_cmd "${log_file}" "$@" &
    launched_pids+=("$!")
    launched_logs+=("${log_file}")
    launched_done+=("${done_dir}")
    launched_sigs+=("${done_sig}")
}
wait_launched() {
    local i n=${#launched_pids[@]} failed=()
    for i in "${!launched_pids[@]}"; do
        if wait "${launched_pids[i]}"; then
            [ -z "${launched_done[i]}" ] || mark_done "${launched_done[i]}" "${launched_sigs[i]}"
            log "$1: $((i + 1 - ${#failed[@]}))/${n} jobs done"
        else
            failed+=("${launched_logs[i]}")
            log "$1: job failed, see ${launched_logs[i]}:" >&2
            tail -n 15 "${launched_logs[i]}" >&2
        fi
    done
    launched_pids=()
    launched_logs=()
    launched_done=()
    launched_sigs=()
    [ ${#failed[@]} -eq 0 ] || die "$1: ${#failed[@]} of ${n} jobs failed: ${failed[*]}"
}
# Stages run one after the other, so a stage's time is the time since the previous one
# ended (or since the start).
stage_start=${SECONDS}
end_stage() {
    log "Stage $1 finished [elapsed=$((SECONDS - stage_start))s]"
    stage_start=${SECONDS}
}
need_corpus() { # need_corpus VAR: stop with a sentence naming the db.sh variable
    [ -n "${!1}" ] || die "$1 is not set: write the corpus location into $1= in db.sh" \
        "or export $1=/path/to/it (leave both IEMOCAP and LIBRISPEECH empty to use" \
        "the generated mini corpora)"
    [ -d "${!1}" ] || die "$1=${!1} (db.sh) is not a directory"
}
make_mini_corpora() {
    ${use_mini} || return 0
    python local/make_mini_corpora.py --out "${mini_dir}" --size "${mini_size}" --nj "${nj}"
}

# ------------------------------------------------------------------ stages
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: IEMOCAP data directories and cross-validation folds (data/${iemocap}_*)"
    make_mini_corpora
    need_corpus IEMOCAP
    # Counts per class, per drop reason and per fold are logged; the script is
    # idempotent itself and also normalises the transcripts to the word convention.
    python local/prepare_iemocap.py --iemocap "${IEMOCAP}" --out data --name "${iemocap}" \
        --subset "${subset}" --protocol "${protocol}" --exc "${exc}" --max_dur "${max_dur}" \
        --resample "${resample}" --downmix "${downmix}"
    end_stage 1
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: LibriSpeech data directories"
    make_mini_corpora
    if [ -z "${LIBRISPEECH}" ] && ${pretrained}; then
        log "LIBRISPEECH is empty and the ASR model is given: no LibriSpeech test WER"
    else
        need_corpus LIBRISPEECH
        python local/prepare_librispeech.py --librispeech "${LIBRISPEECH}" --out data \
            --nj "${nj}" --resample "${resample}" --downmix "${downmix}"
    fi
    end_stage 2
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: 40-dim log-mel features (dump/fbank)"
    # Only the features are stored. The ASR model stacks 3 frames itself (preencoder:
    # stack), the SER model cuts its acoustic input at 7.5 s (max_audio_frames: 750) and
    # masks the padding, and both normalise with statistics of their own training data
    # (stages 5 and 8), so one dump serves every model and every fold.
    # The jobs of all sets run in one pool, then each set's outputs are joined.
    max_jobs=${nj}
    declare -A dump_jobs dump_sigs
    libri_dump=$(libri_sets)
    if ${pretrained} && [ -n "${libri_dump}" ]; then
        # Only our A2W model reads dumped LibriSpeech features (stages 5-7).
        log "LibriSpeech features are not dumped: the pretrained ASR reads waveforms"
        libri_dump=
    fi
    for set in ${iemocap}_all ${libri_dump}; do
        out=dump/fbank/${set}
        sig=$(fingerprint logmel40 resample=${resample} downmix=${downmix} \
            drop=${drop_incomplete} data/${set}/*)
        if is_done "${out}" "${sig}"; then
            log "${out} is up to date"
            continue
        fi
        rm -rf "${out}"
        n=$(wc -l <"data/${set}/wav.scp")
        dump_jobs[${set}]=$((n < nj ? n : nj))
        dump_sigs[${set}]=${sig}
        log "dumping ${set}: ${n} utterances in ${dump_jobs[${set}]} jobs (logs in ${out}/log)"
        for j in $(seq "${dump_jobs[${set}]}"); do
            launch "${out}/log/dump.${j}.log" python local/dump_feats.py compute \
                --data "data/${set}" --out "${out}" --nj "${dump_jobs[${set}]}" --job "${j}" \
                --resample "${resample}" --downmix "${downmix}"
        done
    done
    wait_launched "feature dumping"
    for set in "${!dump_jobs[@]}"; do
        python local/dump_feats.py merge --data "data/${set}" --out "dump/fbank/${set}" \
            --nj "${dump_jobs[${set}]}" --drop_incomplete "${drop_incomplete}"
        mark_done "dump/fbank/${set}" "${dump_sigs[${set}]}"
    done
    # The folds' utterances are those of iemocap_all: their dump directories point into
    # the same ark files.
    for k in 1 2 3 4 5; do
        for part in train valid test; do
            set=${iemocap}_fold${k}_${part}
            out=dump/fbank/${set}
            sig=$(fingerprint logmel40 drop=${drop_incomplete} data/${set}/* \
                dump/fbank/${iemocap}_all/feats.scp)
            is_done "${out}" "${sig}" && continue
            python local/dump_feats.py subset --src "dump/fbank/${iemocap}_all" \
                --data "data/${set}" --out "${out}" --drop_incomplete "${drop_incomplete}"
            mark_done "${out}" "${sig}"
        done
    done
    end_stage 3
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: word token list (${token_dir}) and IEMOCAP OOV rate"
    train_set=$(libri_train_set)
    if ${pretrained}; then
        # The pretrained ASR tokenises with its own units; the text baselines (stage 9)
        # still need words.
        log "the ASR-SER model uses the pretrained ASR's own tokenizer; this word list" \
            "is for the text baselines' word embeddings"
    fi
    if [ -n "${train_set}" ]; then
        source_args=(--train_text "data/${train_set}/text" --vocab_size "${word_vocab_size}")
    elif ${pretrained}; then
        # No embedding is trained for a word that only the test session has, whether it
        # is in the list or <unk>: the list's origin does not favour the test sessions.
        log "no LibriSpeech training set (LIBRISPEECH is empty): the word list is made" \
            "from the IEMOCAP transcripts (data/${iemocap}_all/text)"
        source_args=(--train_text "data/${iemocap}_all/text" --vocab_size "${word_vocab_size}")
    else
        die "no LibriSpeech training set in data/: run stage 2"
    fi
    sig=$(fingerprint "${source_args[@]}" "dump/fbank/${iemocap}_all/text")
    if is_done "${token_dir}" "${sig}"; then
        log "${token_list} is up to date"
        cat "${token_dir}/oov_rate.txt"
    else
        python local/make_token_list.py "${source_args[@]}" \
            --oov_text "dump/fbank/${iemocap}_all/text" --out "${token_dir}"
        mark_done "${token_dir}" "${sig}"
    fi
    if [ -n "${asr_pre_config}" ] && ! ${pretrained}; then
        # The characters of the same training text, for the encoder's CTC pre-training.
        char_dir=$(dirname "${char_token_list}")
        sig=$(fingerprint char "${source_args[@]}")
        if is_done "${char_dir}" "${sig}"; then
            log "${char_token_list} is up to date"
        else
            mkdir -p "${char_dir}"
            python -m espnet2.bin.tokenize_text --token_type char --field 2- \
                --input "${source_args[1]}" --output "${char_token_list}" \
                --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' \
                --add_symbol '<sos/eos>:-1' >"${char_dir}/tokenize.log" 2>&1 ||
                die "making ${char_token_list} failed; see ${char_dir}/tokenize.log"
            mark_done "${char_dir}" "${sig}"
            log "${char_token_list}: $(wc -l <"${char_token_list}") entries"
        fi
    fi
    end_stage 4
fi

# Data options of ESPnet's trainers, for the training and the validation set: "${fbank[@]}"
# (dumped features) or "${raw[@]}" (waveforms) as DIR SPEECH, then each FILE,NAME,TYPE
# names a file of the sets' directories in DIR (text,text,text).
data_args() { # data_args DIR SPEECH TRAIN_SET VALID_SET STATS_DIR FILE,NAME,TYPE...
    local dir=$1 speech=$2 train=$3 valid=$4 stats=$5 spec
    shift 5
    for spec in "${speech}" "$@"; do
        echo "--train_data_path_and_name_and_type ${dir}/${train}/${spec}"
        echo "--valid_data_path_and_name_and_type ${dir}/${valid}/${spec}"
    done
    if [ -n "${stats}" ]; then
        echo "--train_shape_file ${stats}/train/speech_shape"
        echo "--valid_shape_file ${stats}/valid/speech_shape"
        echo "--normalize global_mvn --normalize_conf stats_file=${stats}/train/feats_stats.npz"
    else
        # Collecting statistics: any file listing the keys serves as shape file.
        echo "--train_shape_file ${dir}/${train}/${speech%%,*}"
        echo "--valid_shape_file ${dir}/${valid}/${speech%%,*}"
        echo "--normalize none"
    fi
}

if ! ${pretrained}; then
    asr_train_set=$(libri_train_set)
    asr_stats=exp/asr_stats_${asr_train_set}
fi
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: ASR normalisation statistics and shapes"
    if ${pretrained}; then
        log "skipped: the ASR model is given (--pretrained_asr); its own normalisation" \
            "statistics come with it"
    else
        [ -n "${asr_train_set}" ] || die "no LibriSpeech training set in data/: run stage 2"
        # shellcheck disable=SC2046,SC2086  # word splitting of option lists is intended
        args=(--collect_stats true --config "${asr_config}" --token_type word
            --token_list "${token_list}" --output_dir "${asr_stats}"
            $(data_args "${fbank[@]}" "${asr_train_set}" "${libri_valid_set}" "" text,text,text)
            ${asr_args})
        sig=$(fingerprint "${args[@]}")
        if is_done "${asr_stats}" "${sig}"; then
            log "${asr_stats} is up to date"
        else
            run_cmd "${asr_stats}/log/stats.log" \
                python -m espnet_asrser.bin.asr_train "${args[@]}" ||
                die "collecting ASR statistics failed; see ${asr_stats}/log/stats.log"
            mark_done "${asr_stats}" "${sig}"
        fi
    fi
    end_stage 5
fi

# train_asr WHAT EXP MODEL ARGS...: train an ASR model (asr_train ARGS) into EXP unless it
# is trained; MODEL is the checkpoint the training must leave.
train_asr() {
    local what=$1 exp=$2 model=$3 sig
    shift 3
    sig=$(fingerprint "$@" "${asr_stats}/train/feats_stats.npz")
    check_exp "${exp}" "${sig}"
    if is_done "${exp}" "${sig}"; then
        log "${exp} is trained"
        return
    fi
    log "${what}; follow it in ${exp}/train.log"
    run_cmd "${exp}/train.log" --gpu "${ngpu}" python -m espnet_asrser.bin.asr_train "$@" ||
        die "${what} failed; see ${exp}/train.log"
    [ -f "${model}" ] || die "training ended without ${model}"
    mark_done "${exp}" "${sig}"
}
if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    log "Stage 6: A2W ASR pre-training (${asr_exp})"
    if ${pretrained}; then
        log "no pre-training: the ASR model is given (--pretrained_asr ${pretrained_asr});" \
            "unpacking and checking it"
        sig=$(fingerprint "${pretrained_asr}" "${pretrained_files[@]}")
        if [ -f "${asr_exp}/.done" ] && ! is_done "${asr_exp}" "${sig}"; then
            die "${asr_exp} was made from another --pretrained_asr of the name" \
                "${pretrained_name} (see ${asr_exp}/.done, which names it): remove it, or" \
                "give this model another file or directory name"
        fi
        if is_done "${asr_exp}" "${sig}"; then
            log "${asr_exp} is up to date"
        else
            unpack_log=${asr_exp}/log/pretrained_asr.log
            mkdir -p "${asr_exp}/log"
            python local/pretrained_asr.py --pretrained_asr "${pretrained_asr}" \
                --out "${asr_exp}" >"${unpack_log}" 2>&1 ||
                die "--pretrained_asr ${pretrained_asr} cannot be used; see ${unpack_log}:" \
                    "$(tail -n 1 "${unpack_log}")"
            mark_done "${asr_exp}" "${sig}"
        fi
        log "$(tail -n 1 "${asr_exp}/log/pretrained_asr.log")"
    else
        init_args=()
        if [ -n "${asr_pre_config}" ]; then
            # Character CTC teaches the encoder to listen in minutes; the A2W model starts
            # from that encoder (and may keep it frozen while attention learns to align).
            # shellcheck disable=SC2046
            args=(--config "${asr_pre_config}" --token_type char
                --token_list "${char_token_list}" --ngpu "${ngpu}" --resume true
                --output_dir "${asr_pre_exp}"
                $(data_args "${fbank[@]}" "${asr_train_set}" "${libri_valid_set}" \
                    "${asr_stats}" text,text,text))
            train_asr "encoder pre-training" "${asr_pre_exp}" "${asr_pre_model}" "${args[@]}"
            init_args=(--init_param "${asr_pre_model}:encoder:encoder")
        elif grep -q -E '^freeze_param:' "${asr_config}"; then
            die "${asr_config} freezes parameters (freeze_param), which only makes sense" \
                "after pre-training them: give --asr_pre_config"
        fi
        # shellcheck disable=SC2046,SC2086
        args=(--config "${asr_config}" --token_type word --token_list "${token_list}"
            --ngpu "${ngpu}" --resume true --output_dir "${asr_exp}" "${init_args[@]}"
            $(data_args "${fbank[@]}" "${asr_train_set}" "${libri_valid_set}" "${asr_stats}" \
                text,text,text)
            ${asr_args})
        train_asr "A2W training" "${asr_exp}" "${asr_model_file}" "${args[@]}"
    fi
    end_stage 6
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: ASR decoding and WER (${asr_decode_dir})"
    [ -f "${asr_model_file}" ] || die "no ASR model ${asr_model_file}: run stage 6"
    max_jobs=${nj}
    # Our A2W model decodes the dumped features, a pretrained one the waveforms.
    asr_dir=${asr_input[0]}
    asr_speech=${asr_input[1]}
    decode_sets=()
    for set in ${libri_test_sets} ${iemocap}_all; do
        [ ! -d "${asr_dir}/${set}" ] || decode_sets+=("${set}")
    done
    # The jobs of all sets run in one pool; then each set's outputs are joined and scored.
    pending_sets=()
    for set in "${decode_sets[@]}"; do
        dir=${asr_decode_dir}/${set}
        # shellcheck disable=SC2086
        args=(--config "${decode_config}" --asr_train_config "${asr_train_config}"
            --asr_model_file "${asr_model_file}" --batch_size 1 --ngpu "${ngpu_decode}"
            --data_path_and_name_and_type "${asr_dir}/${set}/${asr_speech}"
            ${decode_args})
        sig=$(fingerprint "${args[@]}" "${asr_dir}/${set}/text")
        is_done "${dir}" "${sig}" && continue
        rm -rf "${dir}"
        mkdir -p "${dir}/logdir"
        printf '%s\n' "${sig}" >"${dir}/.pending"
        pending_sets+=("${set}")
        n=$(wc -l <"${asr_dir}/${set}/${asr_speech%%,*}")
        jobs_here=$((n < nj ? n : nj))
        # Round-robin split: long and short utterances spread evenly over the jobs.
        awk -v n="${jobs_here}" -v d="${dir}/logdir" \
            '{print $1 > (d "/keys." ((NR - 1) % n + 1))}' "${asr_dir}/${set}/${asr_speech%%,*}"
        log "decoding ${set}: ${n} utterances in ${jobs_here} jobs (logs in ${dir}/logdir)"
        for j in $(seq "${jobs_here}"); do
            launch "${dir}/logdir/decode.${j}.log" --gpu "${ngpu_decode}" \
                python -m espnet_asrser.bin.asr_inference "${args[@]}" \
                --key_file "${dir}/logdir/keys.${j}" --output_dir "${dir}/logdir/output.${j}"
        done
    done
    wait_launched "decoding"
    for set in "${pending_sets[@]}"; do
        dir=${asr_decode_dir}/${set}
        if ${pretrained}; then
            # Words of the pretrained ASR's tokenizer, in our references' convention.
            cat "${dir}"/logdir/output.*/1best_recog/text | LC_ALL=C sort >"${dir}/text.1best"
            python local/normalize_text.py "${dir}/text.1best" "${dir}/text"
        else
            cat "${dir}"/logdir/output.*/1best_recog/text | LC_ALL=C sort >"${dir}/text"
        fi
        python -m espnet_asrser.bin.asrser_score --ref_text "${asr_dir}/${set}/text" \
            --hyp_text "${dir}/text" --output_json "${dir}/score.json" \
            --output_md "${dir}/score.md" >"${dir}/score.log"
        mv "${dir}/.pending" "${dir}/.done"
    done
    for set in "${decode_sets[@]}"; do
        log "${set}: $(head -n 1 "${asr_decode_dir}/${set}/score.log")"
    done
    if ! ${pretrained} && [ -d "${asr_dir}/${libri_valid_set}" ]; then
        # Does the A2W model listen? Its validation word accuracy with each utterance's
        # own audio against another utterance's audio (RESULTS.md shows both).
        listening=${asr_decode_dir}/listening.json
        sig=$(fingerprint listening "${asr_train_config}" "${asr_model_file}" \
            "${asr_dir}/${libri_valid_set}/feats.scp" "${asr_dir}/${libri_valid_set}/text")
        if [ ! -f "${listening}" ] || ! is_done "${asr_decode_dir}/listening" "${sig}"; then
            python local/listening_check.py --asr_train_config "${asr_train_config}" \
                --asr_model_file "${asr_model_file}" --data "${asr_dir}/${libri_valid_set}" \
                --out "${listening}" >"${asr_decode_dir}/listening.log" 2>&1 ||
                die "the listening check failed; see ${asr_decode_dir}/listening.log"
            mark_done "${asr_decode_dir}/listening" "${sig}"
        fi
        log "listening check: $(tail -n 1 "${asr_decode_dir}/listening.log")"
    fi
    # The IEMOCAP transcripts of each fold's test session feed the pipeline baselines
    # ("Text-based/Combined (ASR transcripts)") in stage 11.
    for k in ${folds}; do
        test=${iemocap}_fold${k}_test
        dir=${asr_decode_dir}/${test}
        sig=$(fingerprint "${asr_decode_dir}/${iemocap}_all/text" "${asr_dir}/${test}/text")
        if ! is_done "${dir}" "${sig}"; then
            mkdir -p "${dir}"
            awk 'NR == FNR {keep[$1]; next} $1 in keep' "${asr_dir}/${test}/utt2spk" \
                "${asr_decode_dir}/${iemocap}_all/text" >"${dir}/text"
            python -m espnet_asrser.bin.asrser_score --ref_text "${asr_dir}/${test}/text" \
                --hyp_text "${dir}/text" --output_json "${dir}/score.json" >"${dir}/score.log"
            mark_done "${dir}" "${sig}"
        fi
        log "${test}: $(head -n 1 "${dir}/score.log")"
    done
    end_stage 7
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    log "Stage 8: SER normalisation statistics and shapes, per fold"
    # From each fold's training part only: the test session's (and the validation
    # speaker's) features never enter the normalisation.
    # With a pretrained ASR, the ASR-SER model reads waveforms and its acoustic branch
    # computes the audio config's log-mel from them: the same features, but shapes in
    # samples, so the waveform data get statistics of their own (_raw).
    max_jobs=${train_jobs}
    inputs=(fbank)
    ! ${pretrained} || inputs+=(raw)
    for k in ${folds}; do
        for input in "${inputs[@]}"; do
            stats=${ser_prefix}_stats_fold${k}
            stats_input=("${fbank[@]}")
            if [ "${input}" = raw ]; then
                stats+=_raw
                stats_input=("${raw[@]}")
            fi
            # shellcheck disable=SC2046,SC2086
            args=(--collect_stats true --config "${audio_config}" --mode audio
                --emotion_classes ${emotion_classes} --output_dir "${stats}"
                $(data_args "${stats_input[@]}" "${iemocap}_fold${k}_train" \
                    "${iemocap}_fold${k}_valid" "" emotion,emotion,text) ${ser_args})
            sig=$(fingerprint "${args[@]}")
            if is_done "${stats}" "${sig}"; then
                log "${stats} is up to date"
                continue
            fi
            launch --done "${stats}" "${sig}" "${stats}/log/stats.log" \
                python -m espnet_asrser.bin.asrser_train "${args[@]}"
        done
    done
    wait_launched "SER statistics"
    end_stage 8
fi

# train_ser SYSTEM FOLD: launch the training of one SER model unless it is trained.
train_ser() {
    local system=$1 k=$2 mode exp config data_specs=(emotion,emotion,text) extra=()
    local input=("${fbank[@]}") stats=${ser_prefix}_stats_fold${k} asr_files=()
    mode=$(ser_mode "${system}")
    exp=$(ser_exp "${system}" "${k}")
    config=${ser_config[${system}]}
    if [ "${mode}" = asrser ] && ${pretrained}; then
        input=("${raw[@]}")
        stats+=_raw
    fi
    [ -f "${stats}/train/feats_stats.npz" ] || die "no ${stats}: run stage 8"
    [ "${mode}" = audio ] || data_specs+=(text,text,text)
    local words=(--token_type word --token_list "${token_list}")
    case ${mode} in text | combined) extra+=("${words[@]}") ;; esac
    if [ "${mode}" = asrser ]; then
        [ -f "${asr_model_file}" ] || die "no ASR model ${asr_model_file}: run stage 6"
        mkdir -p "${exp}"
        if ${pretrained}; then
            # The ASR part is built from the pretrained model's own config and loaded
            # from its weights, and the text is tokenised with its tokenizer
            # (asrser_train --pretrained_asr); the acoustic branch keeps our log-mel.
            python local/pretrained_asrser_config.py --ser_config "${config}" \
                --audio_config "${audio_config}" --out "${exp}/input_config.yaml"
            extra+=(--pretrained_asr "${asr_train_config},${asr_model_file}")
            asr_files=("${asr_model_file}")
        else
            python local/asr_part_config.py --asr_config "${asr_train_config}" \
                --ser_config "${config}" --out "${exp}/input_config.yaml"
            # Only the ASR part (asr.*) starts from the A2W model; ESPnet stops if a
            # tensor does not fit (no --ignore_init_mismatch).
            extra+=("${words[@]}" --init_param "${asr_model_file}::asr")
        fi
        config=${exp}/input_config.yaml
    fi
    # shellcheck disable=SC2046,SC2086
    local args=(--config "${config}" --mode "${mode}" --emotion_classes ${emotion_classes}
        "${extra[@]}" --ngpu "${ngpu}" --resume true --output_dir "${exp}"
        $(data_args "${input[@]}" "${iemocap}_fold${k}_train" "${iemocap}_fold${k}_valid" \
            "${stats}" "${data_specs[@]}") ${ser_args})
    local sig
    sig=$(fingerprint "${args[@]}" "${stats}/train/feats_stats.npz" "${asr_files[@]}")
    check_exp "${exp}" "${sig}"
    if is_done "${exp}" "${sig}"; then
        log "${exp} is trained"
        return
    fi
    launch --done "${exp}" "${sig}" "${exp}/train.log" --gpu "${ngpu}" \
        python -m espnet_asrser.bin.asrser_train "${args[@]}"
}

if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
    log "Stage 9: SER baselines (audio, text, combined) per fold"
    max_jobs=${train_jobs}
    for k in ${folds}; do
        for mode in audio text combined; do
            train_ser "${mode}" "${k}"
        done
    done
    wait_launched "SER baselines"
    end_stage 9
fi

if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    log "Stage 10: ASR-SER joint fine-tuning per fold, from ${asr_model_file}"
    max_jobs=${train_jobs}
    for k in ${folds}; do
        for system in asrser "${ablations[@]}"; do
            train_ser "${system}" "${k}"
        done
    done
    wait_launched "ASR-SER fine-tuning"
    end_stage 10
fi

# The six rows of the paper's Table 1: system -> model (its mode) and transcript source.
systems="audio text text_asr combined combined_asr asrser ${ablations[*]}"
# Where a system's scores go: the rows that depend on the ASR model are kept per ASR
# model (asrser, asrser_pretrained_<name>, ...).
result_key() { # result_key SYSTEM
    case $1 in
        asrser* | *_asr) echo "$1${asr_suffix}" ;;
        *) echo "$1" ;;
    esac
}
# score SYSTEM REF_DIR OUT_DIR [ASR_TEXT]: WA, UA and confusion matrix of OUT_DIR/emotion,
# with the WER of the transcripts the system used: ASR-SER's own (OUT_DIR/text) or the
# pipeline's input (ASR_TEXT).
score() {
    local text_args=()
    case $1 in
        asrser*) text_args=(--ref_text "$2/text" --hyp_text "$3/text") ;;
        *_asr) text_args=(--ref_text "$2/text" --hyp_text "$4") ;;
    esac
    # shellcheck disable=SC2086
    python -m espnet_asrser.bin.asrser_score --ref_emotion "$2/emotion" \
        --hyp_emotion "$3/emotion" --classes ${emotion_classes} "${text_args[@]}" \
        --output_json "$3/score.json" --output_md "$3/score.md" >"$3/score.log"
}
if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ]; then
    log "Stage 11: inference on each fold's test session, scoring (${results_dir})"
    # The only stage that reads the test sessions; every model was chosen on valid.
    max_jobs=${nj}
    asr_text_tag=asrtext_${asr_decode_dir#exp/}
    asr_text_tag=${asr_text_tag//\//_}
    declare -A out_dir
    for k in ${folds}; do
        test=${iemocap}_fold${k}_test
        fold_jobs=()
        for system in ${systems}; do
            exp=$(ser_exp "${system%_asr}" "${k}")
            [ -f "${exp}/${ser_model}" ] || die "no ${exp}/${ser_model}: run stages 9 and 10"
            speech=("${fbank[@]}")
            [ "$(ser_mode "${system}")" != asrser ] || speech=("${asr_input[@]}")
            args=(--asrser_train_config "${exp}/config.yaml"
                --asrser_model_file "${exp}/${ser_model}" --ngpu "${ngpu_decode}"
                --data_path_and_name_and_type "${speech[0]}/${test}/${speech[1]}")
            case ${system} in
                audio)
                    dir=${exp}/decode/${test}
                    ;;
                text | combined)
                    dir=${exp}/decode_reftext/${test}
                    args+=(--data_path_and_name_and_type "dump/fbank/${test}/text,text,text")
                    ;;
                *_asr)
                    [ -f "${asr_decode_dir}/${test}/text" ] ||
                        die "no ASR transcripts of ${test}: run stage 7"
                    dir=${exp}/decode_${asr_text_tag}/${test}
                    args+=(--data_path_and_name_and_type "${asr_decode_dir}/${test}/text,text,text")
                    ;;
                asrser*)
                    dir=${exp}/decode_${decode_tag}/${test}
                    # shellcheck disable=SC2206
                    args+=(--config "${decode_config}" ${decode_args})
                    ;;
            esac
            out_dir[${system},${k}]=${dir}
            sig=$(fingerprint "${args[@]}" "dump/fbank/${test}/emotion")
            is_done "${dir}" "${sig}" && continue
            rm -rf "${dir}"
            mkdir -p "${dir}"
            # Marked done only once scored, below.
            printf '%s\n' "${sig}" >"${dir}/.pending"
            printf '%s\n' "${args[@]}" --output_dir "${dir}" >"${dir}/inference.args"
            fold_jobs+=("${dir}/inference.args")
        done
        # One job per fold runs its inferences in one process (local/infer_batch.py).
        [ ${#fold_jobs[@]} -eq 0 ] || launch "${results_dir}/log/inference.fold${k}.log" \
            --gpu "${ngpu_decode}" python local/infer_batch.py "${fold_jobs[@]}"
    done
    wait_launched "inference"
    for k in ${folds}; do
        test=${iemocap}_fold${k}_test
        for system in ${systems}; do
            dir=${out_dir[${system},${k}]}
            if [ -f "${dir}/.pending" ]; then
                if [ "$(ser_mode "${system}")" = asrser ] && ${pretrained}; then
                    # As in stage 7: the pretrained tokenizer's words, our convention.
                    mv "${dir}/text" "${dir}/text.1best"
                    python local/normalize_text.py "${dir}/text.1best" "${dir}/text"
                fi
                score "${system}" "dump/fbank/${test}" "${dir}" "${asr_decode_dir}/${test}/text"
                mv "${dir}/.pending" "${dir}/.done"
            fi
            key=$(result_key "${system}")
            mkdir -p "${results_dir}/${key}"
            cmp -s "${dir}/score.json" "${results_dir}/${key}/fold${k}.json" ||
                cp "${dir}/score.json" "${results_dir}/${key}/fold${k}.json"
        done
    done
    # Pooled over folds: the hypotheses of all folds are scored together (not the mean
    # of the fold scores), like the paper's confusion matrix over all 5515 utterances.
    hyp_file() { # hyp_file SYSTEM FOLD NAME: the file of SYSTEM's NAME (emotion, text)
        if [ "$1" != "${1%_asr}" ] && [ "$3" = text ]; then
            echo "${asr_decode_dir}/${iemocap}_fold$2_test/text"
        else
            echo "${out_dir[$1,$2]}/$3"
        fi
    }
    for system in ${systems}; do
        key=$(result_key "${system}")
        pooled=${results_dir}/${key}/pooled
        names=(emotion)
        case ${system} in asrser* | *_asr) names+=(text) ;; esac
        inputs=()
        for name in "${names[@]}"; do
            for k in ${folds}; do
                inputs+=("dump/fbank/${iemocap}_fold${k}_test/${name}"
                    "$(hyp_file "${system}" "${k}" "${name}")")
            done
        done
        sig=$(fingerprint "${inputs[@]}")
        if ! is_done "${pooled}" "${sig}"; then
            mkdir -p "${pooled}/ref"
            for name in "${names[@]}"; do
                for k in ${folds}; do
                    cat "dump/fbank/${iemocap}_fold${k}_test/${name}"
                done | LC_ALL=C sort >"${pooled}/ref/${name}"
                for k in ${folds}; do
                    cat "$(hyp_file "${system}" "${k}" "${name}")"
                done | LC_ALL=C sort >"${pooled}/${name}"
            done
            score "${system}" "${pooled}/ref" "${pooled}" "${pooled}/text"
            mark_done "${pooled}" "${sig}"
        fi
        cmp -s "${pooled}/score.json" "${results_dir}/${key}/pooled.json" ||
            cp "${pooled}/score.json" "${results_dir}/${key}/pooled.json"
        log "${key}, folds ${folds} pooled: $(head -n 1 "${pooled}/score.log")"
    done
    end_stage 11
fi

if [ "${stage}" -le 12 ] && [ "${stop_stage}" -ge 12 ]; then
    log "Stage 12: RESULTS.md and packed models (exp/packed)"
    # This run's ASR model joins those whose results ${results_dir} holds already (our
    # A2W model, pretrained ones): RESULTS.md shows them side by side. Written only when
    # it changes, and before the fingerprint below, which it is part of.
    mkdir -p "${results_dir}/asr_models"
    entry=${results_dir}/asr_models/${asr_key}.json
    # shellcheck disable=SC2086
    python - label "${asr_label}" suffix "${asr_suffix}" folds "$(echo ${folds})" \
        source "${pretrained_asr}" asr_exp "${asr_exp}" asr_config "${asr_train_config}" \
        asr_model "${asr_model_file}" decode_dir "${asr_decode_dir}" \
        decode_config "${decode_config}" asrser_exp "$(ser_exp asrser "{k}")" \
        >"${entry}.new" <<'EOF'
import json, sys
print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2])), indent=1))
EOF
    if cmp -s "${entry}.new" "${entry}"; then
        rm "${entry}.new"
    else
        mv "${entry}.new" "${entry}"
    fi
    exp_args=()
    for mode in audio text combined; do
        exp_args+=(--ser_exp "${mode}=$(ser_exp "${mode}" "{k}")")
    done
    for system in "${ablations[@]}"; do
        exp_args+=(--ablation "$(result_key "${system}")=${ablation_label[${system}]}")
    done
    # The training records (best train and valid accuracies) of every model also go into
    # RESULTS.md: a retrained model changes its .done.
    trained=("${asr_exp}/.done")
    for k in ${folds}; do
        for system in audio text combined asrser "${ablations[@]}"; do
            trained+=("$(ser_exp "${system}" "${k}")/.done")
        done
    done
    # shellcheck disable=SC2086
    args=(--results_dir "${results_dir}" --folds ${folds} --data "data/${iemocap}_all"
        --fold_data "data/${iemocap}_fold{k}_{part}" --oov "${token_dir}/oov_rate.json"
        "${exp_args[@]}" --ser_model "${ser_model}")
    # Generated corpora, ours or given in db.sh, leave oracle.json beside
    # IEMOCAP_full_release (stage 1 makes ours, so it is looked for here, not earlier);
    # RESULTS.md then says that its numbers are not about real speech.
    oracle=$(dirname "${IEMOCAP:-.}")/oracle.json
    if [ -f "${oracle}" ]; then
        args+=(--mini true --oracle "${oracle}")
    else
        args+=(--mini false)
    fi
    sig=$(fingerprint "${args[@]}" "${results_dir}"/*/*.json "${asr_decode_dir}"/*/score.json \
        "${asr_decode_dir}/listening.json" "${trained[@]}")
    if is_done "${results_dir}" "${sig}" && [ -f RESULTS.md ]; then
        log "RESULTS.md is up to date"
    else
        python local/make_results.py "${args[@]}" --out RESULTS.md
        mark_done "${results_dir}" "${sig}"
        log "wrote RESULTS.md"
    fi

    # Every final model, as a model-zoo archive: the A2W model (ESPnet's own packer) and
    # the SER models of every fold (espnet_asrser.bin.asrser_pack). A pretrained ASR is
    # not packed again; the ASR-SER archives hold what they need of it.
    mkdir -p exp/packed
    pack_one() { # pack_one NAME COMMAND...: COMMAND --outpath exp/packed/NAME.zip
        local name=$1 sig
        shift
        sig=$(fingerprint "$@")
        if [ -f "exp/packed/${name}.zip" ] && is_done "exp/packed/${name}" "${sig}"; then
            return
        fi
        mkdir -p "exp/packed/${name}"
        "$@" --outpath "exp/packed/${name}.zip" >"exp/packed/${name}/pack.log" 2>&1 ||
            die "packing ${name} failed; see exp/packed/${name}/pack.log"
        mark_done "exp/packed/${name}" "${sig}"
        log "packed exp/packed/${name}.zip"
    }
    if ! ${pretrained}; then
        pack_one "${asr_exp#exp/}" python -m espnet2.bin.pack asr \
            --asr_train_config "${asr_train_config}" --asr_model_file "${asr_model_file}" \
            --option "${asr_stats}/train/feats_stats.npz"
    fi
    for k in ${folds}; do
        for mode in audio text combined asrser; do
            exp=$(ser_exp "${mode}" "${k}")
            # asrser_pack adds the files the config names (normalisation statistics).
            pack_one "${exp#exp/}" python -m espnet_asrser.bin.asrser_pack \
                --asrser_train_config "${exp}/config.yaml" \
                --asrser_model_file "${exp}/${ser_model}"
        done
    done
    end_stage 12
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
