#!/usr/bin/env bash
# Usage: ./run.sh [--stage N] [--stop-stage N] [any option of asrser.sh, see ./asrser.sh --help]
#
# IEMOCAP four-class speech emotion recognition combined with an acoustic-to-word ASR
# model pretrained on LibriSpeech 960 h (Feng, Ueno, Kawahara, Interspeech 2020).
# asrser.sh's defaults are the paper's setting: 4 classes (exc merged into hap),
# utterances up to 20 s, leave one session out, a 47,465-word A2W vocabulary, beam 4.
# Corpus locations are in db.sh; with both empty, synthetic mini corpora are generated
# and the conf/mini configs used instead. Results: exp/results/<setting>_<ASR model>/
# RESULTS.md; models: exp/packed. To start from an ESPnet model-zoo ASR model instead of
# pre-training our A2W model:
#     ./run.sh --pretrained_asr /path/to/model.zip    (see README.md)
set -euo pipefail
cd "$(dirname "$0")"

# One run per recipe directory: two runs would write the same data/, dump/ and exp/. The
# kernel drops the lock when its holder ends, however it ends, so no stale lock remains.
exec {lock}>>.run.lock
if ! flock --nonblock "${lock}"; then
    # The jobs of a run whose main process was killed alone keep the lock while they write;
    # name every process that holds it (ours closed first), not only the pid the run wrote.
    exec {lock}>&-
    holders=$(find /proc/[0-9]*/fd -lname "$(realpath .run.lock)" 2>/dev/null | cut -d/ -f3 |
        sort -un | paste -sd ' ' || true)
    echo "run.sh: another run (pid $(cat .run.lock)) is using $(pwd); processes holding" \
        "its lock: ${holders:-unknown}. Wait for it to end" >&2
    exit 1
fi
echo "$$" >.run.lock
exec ./asrser.sh "$@"
