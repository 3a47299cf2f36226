#!/usr/bin/env bash
# Usage: ./asrser.sh [options]     (normally through ./run.sh)
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
#   7  ASR decoding and WER: LibriSpeech test sets, IEMOCAP zero-shot, listening check
#   8  SER statistics and shapes, per fold       exp/ser_stats_fold<k>(_raw)
#   9  SER baselines per fold: audio, text, combined       exp/ser_fold<k>_<config>
#  10  ASR-SER joint fine-tuning per fold                  exp/ser_fold<k>_<config>
#      (--pretrained_asr: ..._pretrained_<name>, from waveforms)
#  11  inference and scoring of every fold's test session  (local/evaluate.py)
#  12  RESULTS.md, packed and exported models            exp/results/<run>, exp/packed, exp/hf
#
# Options (--name value; "-" and "_" are the same in names: --stop-stage = --stop_stage):
#   --stage N --stop_stage N     first and last stage to run (1, 12)
#   --ngpu N                     GPUs per training job; decoding uses one if N > 0 (0)
#   --nj N                       parallel jobs for dumping, decoding and inference (4)
#   --train_jobs N               trainings run side by side (folds are independent)
#                                (1; 2 on the mini corpora, whose CPU trainings use one
#                                thread each, so that two cores are both busy)
#   --folds "1 2 3 4 5"          cross-validation folds to train and score
#   --subset all|improvised      all utterances (the paper's Table 1) or the improvised
#                                ones (Table 4)
#   --protocol speaker_independent|speaker_dependent   leave one session out, or a
#                                random split (Table 5)
#   --exc merge|drop --max_dur 20          IEMOCAP selection (local/prepare_iemocap.py,
#                                which writes the label set to data/<iemocap>_all/classes)
#   --resample false --downmix false       convert audio at another rate / with several
#                                channels (stages 1-3) instead of stopping at it
#   --drop_incomplete false      leave out, and list in dump/fbank/<set>/dropped_utts,
#                                utterances a table lacks (stage 3) instead of stopping
#   --mini_size default|tiny     size of the generated corpora when db.sh is empty
#   --libri_valid_set dev_clean  --libri_test_sets "test_clean test_other"
#   --word_vocab_size 47465      entries of the word token list: the size of the authors'
#                                LibriSpeech vocabulary, so that the A2W output layer and
#                                its <unk> rate on IEMOCAP match theirs
#   --conf_dir DIR               where the configs are looked for (conf; conf/mini when
#                                the generated mini corpora are used)
#   --asr_config --decode_config --audio_config --text_config --combined_config
#   --asrser_config FILE         one config each (default <conf_dir>/train_a2w.yaml,
#                                decode_asr.yaml, train_audio.yaml, ...)
#   --asr_args --ser_args --decode_args "..."  extra options for ESPnet's trainers and
#                                decoders; they become part of the experiment names
#   --asr_model valid.acc.ave.pth --ser_model valid.acc_ser.best.pth   checkpoints used
#   --asr_pre_config FILE        character-CTC pre-training of the A2W encoder (stage 6),
#                                whose weights start the A2W encoder (which the A2W config
#                                may freeze). Default <conf_dir>/pretrain_encoder_ctc.yaml
#                                if it exists (mini corpora), else none (the paper); "none"
#   --asrser_ablations "FILE ..." ASR-SER variants trained, scored and reported beside
#                                ASR-SER: configs train_asrser_<name>.yaml whose first line
#                                is "# ablation: <label>". Default
#                                <conf_dir>/ablation/train_asrser_*.yaml; "none"
#   --pretrained_asr SPEC        start from a trained ESPnet ASR model instead of training
#                                our A2W model: a zip of `espnet2.bin.pack asr` (as the
#                                model zoo serves them), its unpacked directory (with
#                                meta.yaml), or CONFIG,MODEL; never downloaded. Its
#                                experiments and results carry its name (README.md, "Start
#                                from a model-zoo ASR model")
#   --pretrained_asr_config FILE --pretrained_asr_model FILE   --pretrained_asr FILE,FILE
#   --update_results false       true: stage 12 also copies the run's RESULTS.md over the
#                                recipe's curated RESULTS.md
#
# Each run's results: exp/results/<subset>_<protocol>_<ASR model>/RESULTS.md, beside the
# paper's table for that setting (Table 1, 4 or 5).
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

# Defaults (listed in --help above).
stage=1 stop_stage=12 ngpu=0 nj=4 train_jobs= folds="1 2 3 4 5"
subset=all protocol=speaker_independent exc=merge max_dur=20
resample=false downmix=false drop_incomplete=false mini_size=default
libri_valid_set=dev_clean libri_test_sets="test_clean test_other" word_vocab_size=47465
conf_dir= asr_config= decode_config= audio_config= text_config= combined_config=
asrser_config= asr_pre_config= asrser_ablations= asr_args= ser_args= decode_args=
asr_model=valid.acc.ave.pth ser_model=valid.acc_ser.best.pth
pretrained_asr= pretrained_asr_config= pretrained_asr_model= update_results=false

. local/parse_options.sh
[ $# -eq 0 ] || die "unexpected argument '$1' (options are --name value; see --help)"
. ./path.sh
. ./cmd.sh
. ./db.sh

# ------------------------------------------------------------------ the run's names
use_mini=false
if [ -z "${IEMOCAP}" ] && [ -z "${LIBRISPEECH}" ]; then
    use_mini=true
    mini_dir=corpora/mini/${mini_size}
    IEMOCAP=${PWD}/${mini_dir}/IEMOCAP_full_release
    LIBRISPEECH=${PWD}/${mini_dir}/LibriSpeech
    log "IEMOCAP and LIBRISPEECH are empty in db.sh: using the synthetic mini corpora" \
        "(--mini_size ${mini_size}) in ${mini_dir}, made by local/make_mini_corpora.py."
fi
conf_dir=${conf_dir:-$(${use_mini} && echo conf/mini || echo conf)}
if [ -z "${train_jobs}" ]; then
    train_jobs=1
    ${use_mini} && train_jobs=2
fi
[[ ${nj} =~ ^[1-9][0-9]*$ ]] && [[ ${train_jobs} =~ ^[1-9][0-9]*$ ]] ||
    die "--nj and --train_jobs take whole numbers >= 1, got '${nj}' and '${train_jobs}'"
# Every name (data sets, experiments, decodings, results) comes from
# espnet_asrser.recipe.layout; the programs of stages 11-12 take the same run_opts.
load_layout() {
    local name names opts=()
    for name in subset protocol exc max_dur folds conf_dir asr_config decode_config \
        audio_config text_config combined_config asrser_config asr_pre_config \
        asrser_ablations asr_args ser_args decode_args asr_model ser_model pretrained_asr \
        pretrained_asr_config pretrained_asr_model; do
        opts+=("--${name}" "${!name}")
    done
    names=$(python -m espnet_asrser.recipe.layout "${opts[@]}") || exit 1
    eval "${names}"
}
load_layout
token_dir=data/token_list/word
token_list=${token_dir}/tokens.txt
char_token_list=data/token_list/char/tokens.txt
ngpu_decode=$((ngpu > 0 ? 1 : 0))
# Several GPUs: one DDP process each (ESPnet's own spawn), not one DataParallel process.
gpu_args=(--ngpu "${ngpu}" $( [ "${ngpu}" -le 1 ] || echo --multiprocessing_distributed true))
fbank=(dump/fbank feats.scp,speech,kaldi_ark)
libri_sets() {
    local s
    for s in ${libri_train_set} ${libri_valid_set} ${libri_test_sets}; do
        [ ! -d "data/${s}" ] || echo "${s}"
    done
}

# ------------------------------------------------------------------ step bookkeeping
fingerprint() { python -m espnet_asrser.recipe.fingerprint "$@"; }
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

launched_what=
stage_start=${SECONDS}
begin_stage() { # begin_stage N TITLE: true if stage N is to run
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] || return 1
    log "Stage $1: $2"
    launched_what=$2
    stage_start=${SECONDS}
}
end_stage() { log "Stage $1 finished [elapsed=$((SECONDS - stage_start))s]"; }
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
if begin_stage 1 "IEMOCAP data directories and cross-validation folds (data/${iemocap}_*)"; then
    make_mini_corpora
    need_corpus IEMOCAP
    # Counts per class, per drop reason and per fold are logged; the script is
    # idempotent itself and also normalises the transcripts to the word convention.
    python local/prepare_iemocap.py --iemocap "${IEMOCAP}" --out data --name "${iemocap}" \
        --subset "${subset}" --protocol "${protocol}" --exc "${exc}" --max_dur "${max_dur}" \
        --resample "${resample}" --downmix "${downmix}"
    end_stage 1
fi

if begin_stage 2 "LibriSpeech data directories"; then
    make_mini_corpora
    if [ -z "${LIBRISPEECH}" ] && ${pretrained}; then
        log "LIBRISPEECH is empty and the ASR model is given: no LibriSpeech test WER"
    else
        need_corpus LIBRISPEECH
        python local/prepare_librispeech.py --librispeech "${LIBRISPEECH}" --out data \
            --nj "${nj}" --resample "${resample}" --downmix "${downmix}"
        load_layout # it names the LibriSpeech training set
    fi
    end_stage 2
fi

if begin_stage 3 "40-dim log-mel features (dump/fbank)"; then
    # Only the features are stored. The ASR model stacks 3 frames itself (preencoder:
    # stack), the SER model cuts its acoustic input at 7.5 s (max_audio_frames: 750) and
    # masks the padding, and both normalise with statistics of their own training data
    # (stages 5 and 8), so one dump serves every model and every fold.
    # The jobs of all sets run in one pool, then each set's outputs are joined.
    max_jobs=${nj}
    declare -A dump_jobs dump_sigs
    # Only our A2W model reads LibriSpeech features; a pretrained ASR reads waveforms.
    ! ${pretrained} || log "LibriSpeech features are not dumped: the pretrained ASR reads waveforms"
    for set in ${iemocap}_all $(${pretrained} || libri_sets); do
        out=dump/fbank/${set}
        sig=$(fingerprint logmel40 resample=${resample} downmix=${downmix} \
            drop=${drop_incomplete} data/${set}/*)
        is_done "${out}" "${sig}" && continue
        rm -rf "${out}"
        n=$(wc -l <"data/${set}/wav.scp")
        dump_jobs[${set}]=$((n < nj ? n : nj))
        dump_sigs[${set}]=${sig}
        log "dumping ${set}: ${n} utterances in ${dump_jobs[${set}]} jobs"
        for j in $(seq "${dump_jobs[${set}]}"); do
            launch "${out}/log/dump.${j}.log" python local/dump_feats.py compute \
                --data "data/${set}" --out "${out}" --nj "${dump_jobs[${set}]}" --job "${j}" \
                --resample "${resample}" --downmix "${downmix}"
        done
    done
    wait_launched
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

if begin_stage 4 "word token list (${token_dir}) and IEMOCAP OOV rate"; then
    train_text=data/${libri_train_set}/text
    if [ -z "${libri_train_set}" ]; then
        ${pretrained} || die "no LibriSpeech training set in data/: run stage 2"
        # No embedding is trained for a word that only the test session has, whether it
        # is in the list or <unk>: the list's origin does not favour the test sessions.
        train_text=data/${iemocap}_all/text
        log "no LibriSpeech training set: the text baselines' words are from ${train_text}"
    fi
    source_args=(--train_text "${train_text}" --vocab_size "${word_vocab_size}")
    # One list for every IEMOCAP selection; the OOV rate of each in ${oov_dir}.
    sig=$(fingerprint "${source_args[@]}" "dump/fbank/${iemocap}_all/text")
    if ! is_done "${oov_dir}" "${sig}"; then
        python local/make_token_list.py "${source_args[@]}" --out "${token_dir}" \
            --oov_text "dump/fbank/${iemocap}_all/text" --oov_out "${oov_dir}" >/dev/null
        mark_done "${oov_dir}" "${sig}"
    fi
    cat "${oov_dir}/oov_rate.txt"
    if [ -n "${asr_pre_exp}" ]; then
        # The characters of the same training text, for the encoder's CTC pre-training.
        char_dir=$(dirname "${char_token_list}")
        sig=$(fingerprint char "${source_args[@]}")
        if ! is_done "${char_dir}" "${sig}"; then
            mkdir -p "${char_dir}"
            python -m espnet2.bin.tokenize_text --token_type char --field 2- \
                --input "${train_text}" --output "${char_token_list}" \
                --write_vocabulary true --add_symbol '<blank>:0' --add_symbol '<unk>:1' \
                --add_symbol '<sos/eos>:-1' >"${char_dir}/tokenize.log" 2>&1 ||
                die "making ${char_token_list} failed; see ${char_dir}/tokenize.log"
            mark_done "${char_dir}" "${sig}"
        fi
        log "${char_token_list}: $(wc -l <"${char_token_list}") entries"
    fi
    end_stage 4
fi

# Data options of ESPnet's trainers, for the training and the validation set: DIR SPEECH
# is "${fbank[@]}" (dumped features) or the raw waveforms (data wav.scp,speech,sound);
# then each FILE,NAME,TYPE names a file of the sets' directories in DIR (text,text,text).
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

if begin_stage 5 "ASR normalisation statistics and shapes"; then
    if ${pretrained}; then
        log "skipped: the ASR model is given (--pretrained_asr); its own normalisation" \
            "statistics come with it"
    else
        [ -n "${libri_train_set}" ] || die "no LibriSpeech training set in data/: run stage 2"
        # shellcheck disable=SC2046,SC2086  # word splitting of option lists is intended
        args=(--collect_stats true --config "${asr_config}" --token_type word
            --token_list "${token_list}" --output_dir "${asr_stats}"
            $(data_args "${fbank[@]}" "${libri_train_set}" "${libri_valid_set}" "" text,text,text)
            ${asr_args})
        sig=$(fingerprint "${args[@]}")
        if ! is_done "${asr_stats}" "${sig}"; then
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
    is_done "${exp}" "${sig}" && return
    log "${what}; follow it in ${exp}/train.log"
    run_cmd "${exp}/train.log" --gpu "${ngpu}" python -m espnet_asrser.bin.asr_train "$@" ||
        die "${what} failed; see ${exp}/train.log"
    [ -f "${model}" ] || die "training ended without ${model}"
    mark_done "${exp}" "${sig}"
}
if begin_stage 6 "A2W ASR pre-training (${asr_exp})"; then
    if ${pretrained}; then
        log "no pre-training: the ASR model is given (--pretrained_asr ${pretrained_asr});" \
            "unpacking and checking it"
        sig=$(fingerprint "${pretrained_asr}" "${pretrained_files[@]}")
        if [ -f "${asr_exp}/.done" ] && ! is_done "${asr_exp}" "${sig}"; then
            die "${asr_exp} was made from another --pretrained_asr of the same name" \
                "(see ${asr_exp}/.done, which names it): remove it, or give this model" \
                "another file or directory name"
        fi
        if ! is_done "${asr_exp}" "${sig}"; then
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
        # shellcheck disable=SC2207
        libri_data=($(data_args "${fbank[@]}" "${libri_train_set}" "${libri_valid_set}" \
            "${asr_stats}" text,text,text))
        init_args=()
        if [ -n "${asr_pre_exp}" ]; then
            # Character CTC teaches the encoder to listen in minutes; the A2W model starts
            # from that encoder (and may keep it frozen while attention learns to align).
            train_asr "encoder pre-training" "${asr_pre_exp}" "${asr_pre_model}" \
                --config "${asr_pre_config}" --token_type char \
                --token_list "${char_token_list}" "${gpu_args[@]}" --resume true \
                --output_dir "${asr_pre_exp}" "${libri_data[@]}"
            init_args=(--init_param "${asr_pre_model}:encoder:encoder")
        elif grep -q -E '^freeze_param:' "${asr_config}"; then
            die "${asr_config} freezes parameters (freeze_param), which only makes sense" \
                "after pre-training them: give --asr_pre_config"
        fi
        # shellcheck disable=SC2086
        train_asr "A2W training" "${asr_exp}" "${asr_model_file}" --config "${asr_config}" \
            --token_type word --token_list "${token_list}" "${gpu_args[@]}" --resume true \
            --output_dir "${asr_exp}" "${init_args[@]}" "${libri_data[@]}" ${asr_args}
    fi
    end_stage 6
fi

if begin_stage 7 "ASR decoding and WER (${asr_decode_dir})"; then
    [ -f "${asr_model_file}" ] || die "no ASR model ${asr_model_file}: run stage 6"
    max_jobs=${nj}
    asr_dir=${asr_input[0]}
    asr_speech=${asr_input[1]}
    # The jobs of all sets run in one pool; then each set's outputs are joined and scored.
    # Each job beam-searches 16 utterances at once (ESPnet's Speech2Text with --batch_size 1).
    declare -A decode_sigs=()
    for set in ${libri_test_sets} ${iemocap}_all; do
        [ -d "${asr_dir}/${set}" ] || continue
        dir=${asr_decode_dir}/${set}
        # shellcheck disable=SC2086
        args=(--config "${decode_config}" --asr_train_config "${asr_train_config}"
            --asr_model_file "${asr_model_file}" --batch_size 16 --ngpu "${ngpu_decode}"
            --data_path_and_name_and_type "${asr_dir}/${set}/${asr_speech}" ${decode_args})
        sig=$(fingerprint "${args[@]}" "${asr_dir}/${set}/text")
        is_done "${dir}" "${sig}" && continue
        rm -rf "${dir}"
        mkdir -p "${dir}/logdir"
        decode_sigs[${set}]=${sig}
        n=$(wc -l <"${asr_dir}/${set}/${asr_speech%%,*}")
        jobs_here=$((n < nj ? n : nj))
        # Round-robin split: long and short utterances spread evenly over the jobs.
        awk -v n="${jobs_here}" -v d="${dir}/logdir" \
            '{print $1 > (d "/keys." ((NR - 1) % n + 1))}' "${asr_dir}/${set}/${asr_speech%%,*}"
        log "decoding ${set}: ${n} utterances in ${jobs_here} jobs"
        for j in $(seq "${jobs_here}"); do
            launch "${dir}/logdir/decode.${j}.log" --gpu "${ngpu_decode}" \
                python -m espnet_asrser.bin.asr_inference "${args[@]}" \
                --key_file "${dir}/logdir/keys.${j}" --output_dir "${dir}/logdir/output.${j}"
        done
    done
    wait_launched
    for set in "${!decode_sigs[@]}"; do
        dir=${asr_decode_dir}/${set}
        cat "${dir}"/logdir/output.*/1best_recog/text | LC_ALL=C sort >"${dir}/text.1best"
        # A pretrained tokenizer's words in our references' convention (ours already are).
        if ${pretrained}; then
            python local/normalize_text.py "${dir}/text.1best" "${dir}/text"
        else
            mv "${dir}/text.1best" "${dir}/text"
        fi
        python -m espnet_asrser.bin.asrser_score --ref_text "${asr_dir}/${set}/text" \
            --hyp_text "${dir}/text" --output_json "${dir}/score.json" \
            --output_md "${dir}/score.md" >"${dir}/score.log"
        mark_done "${dir}" "${decode_sigs[${set}]}"
    done
    for set in ${libri_test_sets} ${iemocap}_all; do
        [ ! -f "${asr_decode_dir}/${set}/score.log" ] ||
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
    end_stage 7
fi

classes_file=data/${iemocap}_all/classes
if begin_stage 8 "SER normalisation statistics and shapes, per fold"; then
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
                stats_input=("${asr_input[@]}")
            fi
            # shellcheck disable=SC2046,SC2086
            args=(--collect_stats true --config "${audio_config}" --mode audio
                --emotion_classes $(cat "${classes_file}") --output_dir "${stats}"
                $(data_args "${stats_input[@]}" "${iemocap}_fold${k}_train" \
                    "${iemocap}_fold${k}_valid" "" emotion,emotion,text) ${ser_args})
            sig=$(fingerprint "${args[@]}")
            is_done "${stats}" "${sig}" && continue
            launch --done "${stats}" "${sig}" "${stats}/log/stats.log" \
                python -m espnet_asrser.bin.asrser_train "${args[@]}"
        done
    done
    wait_launched
    end_stage 8
fi

# train_ser SYSTEM FOLD: launch the training of one SER model unless it is trained. The
# ASR part of ASR-SER is built from the ASR model's own config and loaded from its
# weights (--pretrained_asr CONFIG,MODEL), whichever ASR model it is; the text is then
# tokenised with its tokenizer.
train_ser() {
    local system=$1 k=$2 mode=$1 exp=${ser_exp[$1,$2]} input=("${fbank[@]}") extra=()
    local stats=${ser_prefix}_stats_fold${k} data_specs=(emotion,emotion,text) asr_files=()
    case ${system} in
        asrser*)
            mode=asrser
            input=("${asr_input[@]}")
            ! ${pretrained} || stats+=_raw
            [ -f "${asr_model_file}" ] || die "no ASR model ${asr_model_file}: run stage 6"
            extra=(--pretrained_asr "${asr_train_config},${asr_model_file}")
            asr_files=("${asr_model_file}")
            ;;
        text | combined) extra=(--token_type word --token_list "${token_list}") ;;
    esac
    [ -f "${stats}/train/feats_stats.npz" ] || die "no ${stats}: run stage 8"
    [ "${mode}" = audio ] || data_specs+=(text,text,text)
    # shellcheck disable=SC2046,SC2086
    local args=(--config "${ser_config[${system}]}" --mode "${mode}"
        --emotion_classes $(cat "${classes_file}") "${extra[@]}" "${gpu_args[@]}"
        --resume true --output_dir "${exp}"
        $(data_args "${input[@]}" "${iemocap}_fold${k}_train" "${iemocap}_fold${k}_valid" \
            "${stats}" "${data_specs[@]}") ${ser_args})
    local sig
    sig=$(fingerprint "${args[@]}" "${stats}/train/feats_stats.npz" "${asr_files[@]}")
    check_exp "${exp}" "${sig}"
    is_done "${exp}" "${sig}" && return
    launch --done "${exp}" "${sig}" "${exp}/train.log" --gpu "${ngpu}" \
        python -m espnet_asrser.bin.asrser_train "${args[@]}"
}

if begin_stage 9 "SER baselines (audio, text, combined) per fold"; then
    max_jobs=${train_jobs}
    for k in ${folds}; do
        for system in audio text combined; do
            train_ser "${system}" "${k}"
        done
    done
    wait_launched
    end_stage 9
fi

if begin_stage 10 "ASR-SER joint fine-tuning per fold, from ${asr_model_file}"; then
    max_jobs=${train_jobs}
    for k in ${folds}; do
        for system in "${trained_systems[@]}"; do
            [[ ${system} == asrser* ]] && train_ser "${system}" "${k}"
        done
    done
    wait_launched
    end_stage 10
fi

if begin_stage 11 "inference on each fold's test session, scoring (${results_dir})"; then
    max_jobs=${nj} # the only stage that reads the test sessions; models were chosen on valid
    for k in ${folds}; do
        python local/evaluate.py "${run_opts[@]}" --fold "${k}" --pending || continue
        launch "${results_dir}/log/evaluate.fold${k}.log" --gpu "${ngpu_decode}" \
            python local/evaluate.py "${run_opts[@]}" --fold "${k}" --ngpu "${ngpu_decode}"
    done
    wait_launched
    python local/evaluate.py "${run_opts[@]}" --pool
    end_stage 11
fi

if begin_stage 12 "RESULTS.md (${results_dir}), packed models (exp/packed, exp/hf)"; then
    # Generated corpora, ours or given in db.sh, leave oracle.json beside
    # IEMOCAP_full_release; RESULTS.md then says that its numbers are not about real speech.
    oracle=$(dirname "${IEMOCAP:-.}")/oracle.json
    [ -f "${oracle}" ] || oracle=
    # Every input of RESULTS.md: scores, the listening check, every training's .done.
    sig=$(fingerprint "${run_opts[@]}" "${oracle}" "${results_dir}"/*/*.json \
        "${asr_decode_dir}"/*/score.json "${asr_decode_dir}/listening.json" \
        "${asr_exp}/.done" "${ser_exp[@]/%//.done}")
    if is_done "${results_dir}" "${sig}" && [ -f "${results_dir}/RESULTS.md" ]; then
        log "${results_dir}/RESULTS.md is up to date"
    else
        python local/make_results.py "${run_opts[@]}" --oracle "${oracle}" \
            --out "${results_dir}/RESULTS.md"
        mark_done "${results_dir}" "${sig}"
        log "wrote ${results_dir}/RESULTS.md"
    fi
    if [ "${update_results}" = true ] && [ "${results_dir}/RESULTS.md" -nt RESULTS.md ]; then
        # Written again, not copied: its links to the figures are relative to where it is.
        python local/make_results.py "${run_opts[@]}" --oracle "${oracle}" --out RESULTS.md
        log "wrote RESULTS.md too (--update_results true)"
    fi

    # Every final model as a model-zoo archive (ours and every fold's SER models), and the
    # ASR-SER ones as Hugging Face-style directories with a model card, ready to upload.
    python local/pack_models.py "${run_opts[@]}"
    python local/export_hf.py "${run_opts[@]}"
    end_stage 12
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
