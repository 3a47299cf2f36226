"""Which keys of an ESPnet ASR config (``config.yaml``) mean what, for this package.

One home for these lists: :mod:`espnet_asrser.asr.pretrained` builds an ASR part from a
pretrained model's config with them, and :mod:`espnet_asrser.model_zoo` packs the files
they name.
"""

# How the ``text`` data are tokenised.
TOKENIZER_KEYS = ("token_type", "bpemodel", "non_linguistic_symbols", "cleaner", "g2p")
# Besides the ClassChoices (frontend, encoder, ...), what ASRTask.build_model reads.
BUILD_KEYS = ("token_list", "input_size", "ctc_conf", "joint_net_conf", "model_conf", "init")
# Values that name a file (checked to exist, and packed with a model).
FILE_KEYS = ("bpemodel", "non_linguistic_symbols", "stats_file")
# Top-level keys whose files inference needs besides the component configs (*_conf).
INFERENCE_FILE_KEYS = ("token_list",) + tuple(k for k in TOKENIZER_KEYS if k in FILE_KEYS)
