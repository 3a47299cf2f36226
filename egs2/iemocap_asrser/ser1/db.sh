# Usage: sourced by asrser.sh.
#
# Where the corpora are. Each variable may also be set in the environment, which wins
# over the value written here (handy for CI and for one-off runs):
#     IEMOCAP=/data/IEMOCAP_full_release LIBRISPEECH=/data/LibriSpeech ./run.sh
#
# IEMOCAP:     the IEMOCAP_full_release directory (holding Session1 ... Session5).
# LIBRISPEECH: the LibriSpeech directory (holding train-clean-100, dev-clean, ...).
#
# When both are empty the recipe generates small synthetic corpora in the real layouts
# (local/make_mini_corpora.py, under corpora/mini) and runs on those, saying so in its log.
IEMOCAP=${IEMOCAP:-}
LIBRISPEECH=${LIBRISPEECH:-}
