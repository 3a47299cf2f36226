#!/usr/bin/env bash
# Usage: ./run.sh [--stage N] [--stop-stage N] [any option of asrser.sh, see ./asrser.sh --help]
#
# IEMOCAP four-class speech emotion recognition combined with an acoustic-to-word ASR
# model pretrained on LibriSpeech 960 h (Feng, Ueno, Kawahara, Interspeech 2020).
# Corpus locations are in db.sh; with both empty, synthetic mini corpora are generated
# and the conf/mini configs used instead. Results: RESULTS.md; models: exp/packed.
# To start from an ESPnet model-zoo ASR model instead of pre-training our A2W model:
#     ./run.sh --pretrained_asr /path/to/model.zip    (see README.md)
set -euo pipefail

# The paper's setting: 4 classes (exc merged into hap), utterances up to 20 s, leave one
# session out, beam 4.
# 47,465 word entries: the size of the authors' LibriSpeech vocabulary, so that the A2W
# output layer and its <unk> rate on IEMOCAP match theirs (LibriSpeech 960 h has ~89k
# word types; the rarest ones are seen too few times to be learnt anyway).
./asrser.sh \
    --subset all \
    --exc merge \
    --max_dur 20 \
    --protocol speaker_independent \
    --emotion_classes "ang hap neu sad" \
    --word_vocab_size 47465 \
    --libri_valid_set dev_clean \
    --libri_test_sets "test_clean test_other" \
    "$@"
