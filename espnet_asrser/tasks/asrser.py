"""ASRSERTask: ESPnet's ASR task plus an emotion target and the SER model.

Inherits every ASR option of :class:`espnet2.tasks.asr.ASRTask` (``--frontend``,
``--normalize``, ``--preencoder``, ``--encoder``, ``--decoder``, ``--token_list``, ...),
which configure the ASR part, and adds:

* ``--mode``: audio | text | combined | asr | asrser (see :mod:`espnet_asrser.espnet_model`);
* ``--emotion_classes``: the label set, in output order;
* ``--model_conf``: keyword arguments of :class:`~espnet_asrser.espnet_model.ESPnetASRSERModel`
  (SER sizes, ``asr_weight``, ``asr_feature_source``, ``freeze_asr``, ...);
* ``--asr_model_conf``: keyword arguments of ESPnet's ``ESPnetASRModel`` for the ASR part
  (``ctc_weight``, ``lsm_weight``, ...), i.e. what ``model_conf`` is in an ESPnet ASR config;
  with a pretrained ASR they update that model's own ``model_conf`` (e.g. label smoothing
  during fine-tuning), so only the keys given are changed;
* ``--pretrained_asr``: start from a trained ESPnet ASR model (a model-zoo archive, its
  unpacked directory, or ``CONFIG,MODEL``; see :mod:`espnet_asrser.asr.pretrained`). The
  ASR part is then built from that model's own config (its frontend, normalisation,
  encoder, decoder and ``model_conf``) and weights, and the ``text`` data are tokenised with
  its token list and tokenizer; this task's ASR architecture options (``--encoder``,
  ``--decoder``, ...) are then not used, while ``--frontend``/``--normalize`` still
  configure the acoustic SER branch;
* ``--asr_config``: the ESPnet ASR config (a dict) the ASR part is built from instead of
  the ASR options; ``--pretrained_asr`` fills it in, so the saved config.yaml rebuilds the
  model without the archive.

Data: ``speech`` and ``emotion`` (Kaldi-style ``utt-id class-name``) are required for
training, ``text`` (the reference transcript) is optional: L_ASR, teacher-forced ASR
features and the text baselines need it.
"""

import argparse
import contextvars
import copy
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from espnet2.tasks.asr import (
    ASRTask,
    frontend_choices,
    model_choices,
    normalize_choices,
)
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.torch_utils.initialize import initialize
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.utils.types import str_or_none

from espnet_asrser.asr.pretrained import (
    adopt_tokenizer,
    build_asr_from_config,
    check_input_matches,
    frontend_rate,
    load_pretrained_weights,
    resolve_pretrained_asr,
)
from espnet_asrser.corpora.iemocap import FOUR_CLASSES
from espnet_asrser.espnet_model import MODES, ESPnetASRSERModel, mode_inputs
from espnet_asrser.tasks import register_asr_components
from espnet_asrser.train.init_param import counted_init_param_loads
from espnet_asrser.train.trainer import ASRSERTrainer
from espnet_asrser.utils.weights_file import load_weights
from espnet_asrser.utils.train_data import check_data_files

register_asr_components()

DEFAULT_EMOTIONS = FOUR_CLASSES

# True while build_model_from_file rebuilds a trained model: its checkpoint holds the ASR
# weights, so --pretrained_asr (possibly absent on this machine) must not be opened.
_REBUILDING_FROM_FILE: contextvars.ContextVar = contextvars.ContextVar(
    "asrser_rebuilding_from_file", default=False
)
# The args of a main_worker whose data are still to be checked. The check runs in
# build_model, the first step after ESPnet has set up logging in main_worker.
_DATA_TO_CHECK: contextvars.ContextVar = contextvars.ContextVar(
    "asrser_data_to_check", default=None
)


class EmotionPreprocessor:
    """Maps the ``emotion`` label to its class index; delegates the rest (text tokens) to
    ESPnet's ASR preprocessor when there is one."""

    def __init__(
        self,
        classes: Sequence[str],
        text_preprocessor: Optional[Callable] = None,
        keep_text: bool = True,
    ):
        self.classes = list(classes)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.text_preprocessor = text_preprocessor
        self.keep_text = keep_text

    def __call__(self, uid: str, data: Dict[str, object]) -> Dict[str, np.ndarray]:
        data = dict(data)
        if "emotion" in data:
            label = data["emotion"]
            if isinstance(label, str):
                label = label.strip()
                if label not in self.index:
                    raise ValueError(
                        f"utterance '{uid}': emotion label '{label}' is not one of the "
                        f"configured emotion_classes {self.classes}"
                    )
                data["emotion"] = np.array([self.index[label]], dtype=np.int64)
        if not self.keep_text:
            data.pop("text", None)
        if self.text_preprocessor is not None:
            data = self.text_preprocessor(uid, data)
        return data


def _speech_rate(args: argparse.Namespace) -> Optional[int]:
    """The sampling rate the model's ``speech`` input must have, or None where it is not
    known here (dumped features, text modes, an ASR part still to be read from
    --pretrained_asr)."""
    use_audio, _, use_asr = mode_inputs(args.mode)
    config = vars(args)
    if not use_audio and use_asr and (args.pretrained_asr or args.asr_config):
        if not isinstance(args.asr_config, dict):
            return None
        config = args.asr_config
    elif not (use_audio or use_asr):
        return None
    if config.get("input_size") is not None:
        return None
    return frontend_rate(config.get("frontend"), config.get("frontend_conf"))


def check_training_data(args: argparse.Namespace) -> None:
    """The train and valid data files against each other, the emotion classes and the
    frontend's sampling rate (:mod:`espnet_asrser.utils.train_data`)."""
    if args.multiple_iterator:
        return  # the paths are patterns of several shards
    fs = _speech_rate(args)
    for split in ("train", "valid"):
        check_data_files(
            split,
            getattr(args, f"{split}_data_path_and_name_and_type"),
            getattr(args, f"{split}_shape_file"),
            emotion_classes=args.emotion_classes,
            fs=fs,
            allow_multi_rates=args.allow_multi_rates,
        )


class ASRSERTask(ASRTask):
    # Visible NaN/inf skips, safe checkpoints and config-change checks on resume
    # (docs/reliability.md).
    trainer = ASRSERTrainer
    # The ASR model class is fixed (ESPnetASRModel, configured by --asr_model_conf), so
    # ESPnet's --model/--model_conf choice is replaced by our own --model_conf.
    class_choices_list = [c for c in ASRTask.class_choices_list if c is not model_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        # The audio-only baseline has no tokens; build_model checks the other modes.
        required = parser.get_default("required")
        if "token_list" in required:
            required.remove("token_list")
        group = parser.add_argument_group(description="SER related")
        group.add_argument(
            "--mode",
            type=str,
            default="asrser",
            choices=MODES,
            help="SER inputs: audio, text, combined (audio+text), asr (ASR features), "
            "asrser (audio + ASR features, the proposed model)",
        )
        group.add_argument(
            "--emotion_classes",
            type=str,
            nargs="+",
            default=list(DEFAULT_EMOTIONS),
            help="Emotion labels in output order",
        )
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(ESPnetASRSERModel),
            help="The keyword arguments of ESPnetASRSERModel",
        )
        group.add_argument(
            "--asr_model_conf",
            action=NestedDictAction,
            default={},
            help="Keyword arguments of the ASR part (ESPnetASRModel), over its defaults or, "
            "with --pretrained_asr/--asr_config, over that model's own model_conf "
            "(default: %(default)s, i.e. ESPnetASRModel's defaults or the pretrained "
            "model's)",
        )
        group.add_argument(
            "--pretrained_asr",
            type=str_or_none,
            default=None,
            help="Start from a trained ESPnet ASR model: an archive of `python -m "
            "espnet2.bin.pack asr` (.zip/.tar.gz, as the model zoo serves them), its "
            "unpacked directory (with meta.yaml), or CONFIG,MODEL (an ASR config.yaml and "
            "its .pth, comma-separated). The ASR part is built from that model's config, "
            "loaded from its weights, and its token list/tokenizer are used for 'text'",
        )
        group.add_argument(
            "--asr_config",
            action=NestedDictAction,
            default=None,
            help="ESPnet ASR config (dict) the ASR part is built from, instead of the ASR "
            "options of this task; set from --pretrained_asr and saved in config.yaml",
        )

    @classmethod
    def get_default_config(cls) -> Dict[str, object]:
        # ESPnet completes the *_conf of ClassChoices with the class defaults; ours are
        # plain options, so complete them here for a --print_config that lists everything.
        config = super().get_default_config()
        # asr_model_conf stays as given: its keys override a pretrained ASR's model_conf,
        # so listing every default there would silently replace that model's settings.
        config["model_conf"] = {
            **get_default_kwargs(ESPnetASRSERModel), **(config["model_conf"] or {})
        }
        return config

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        has_tokens = getattr(args, "token_list", None) is not None
        text_preprocessor = (
            super().build_preprocess_fn(args, train) if has_tokens else None
        )
        return EmotionPreprocessor(args.emotion_classes, text_preprocessor, has_tokens)

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "emotion")

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("text",)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        """ESPnet's ``main_worker``, with the data files checked against each other before
        the model is built and every ``--init_param`` counted (docs/reliability.md)."""
        token = _DATA_TO_CHECK.set(args)
        try:
            with counted_init_param_loads(args.token_list):
                super().main_worker(args)
        finally:
            _DATA_TO_CHECK.reset(token)

    @classmethod
    def build_model_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
    ) -> Tuple[AbsESPnetModel, argparse.Namespace]:
        """ESPnet's ``build_model_from_file``; a model trained with ``--pretrained_asr``
        rebuilds its ASR part from the ``asr_config`` stored in its config.yaml and takes
        the weights from ``model_file``, without opening the pretrained archive."""
        if model_file is not None:
            # ESPnet loads it as a full pickle; a file from elsewhere must hold tensors
            # only, which this checks (UntrustedWeightsError names it and the way out).
            load_weights(model_file, "model file")
        token = _REBUILDING_FROM_FILE.set(True)
        try:
            return super().build_model_from_file(config_file, model_file, device)
        finally:
            _REBUILDING_FROM_FILE.reset(token)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRSERModel:
        if _DATA_TO_CHECK.get() is args:
            _DATA_TO_CHECK.set(None)
            check_training_data(args)
        use_audio, use_text, use_asr = mode_inputs(args.mode)
        pretrained_spec = getattr(args, "pretrained_asr", None)
        asr_config = getattr(args, "asr_config", None)
        if (pretrained_spec is not None or asr_config is not None) and not use_asr:
            raise ValueError(
                f"--pretrained_asr/--asr_config give the ASR part, but --mode {args.mode} "
                "has none (use asr or asrser)"
            )
        pretrained = None
        if pretrained_spec is not None and not _REBUILDING_FROM_FILE.get():
            pretrained = resolve_pretrained_asr(pretrained_spec)
            asr_config = pretrained.config
            # Saved in config.yaml: the ASR part rebuilds from it at inference.
            args.asr_config = asr_config
        if asr_config is not None:
            asr_source = pretrained_spec or "asr_config"
            adopt_tokenizer(args, asr_config, asr_source)

        token_list: Optional[List[str]] = None
        if isinstance(args.token_list, str):
            with open(args.token_list, encoding="utf-8") as f:
                token_list = [line.rstrip("\n") for line in f]
            args.token_list = token_list  # keep the written config portable
        elif args.token_list is not None:
            token_list = list(args.token_list)
        if (use_text or use_asr) and token_list is None:
            raise ValueError(f"--mode {args.mode} needs --token_list")

        asr = None
        if use_asr and asr_config is not None:
            if use_audio:
                check_input_matches(args, asr_config, asr_source)
            asr = build_asr_from_config(asr_config, asr_source, args.asr_model_conf)
        elif use_asr:
            asr_args = copy.copy(args)
            asr_args.model = "espnet"
            asr_args.model_conf = dict(args.asr_model_conf)
            asr_args.init = None  # initialised below, with the whole model
            asr = ASRTask.build_model(asr_args)

        frontend = normalize = None
        if use_audio:
            if args.input_size is None:
                frontend = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
            if args.normalize is not None:
                normalize = normalize_choices.get_class(args.normalize)(
                    **args.normalize_conf
                )

        model = ESPnetASRSERModel(
            mode=args.mode,
            emotion_classes=args.emotion_classes,
            frontend=frontend,
            normalize=normalize,
            asr=asr,
            vocab_size=len(token_list) if token_list is not None else None,
            input_size=args.input_size,
            **args.model_conf,
        )
        if args.init is not None:
            initialize(model, args.init)
        if pretrained is not None:
            # After --init, which would otherwise overwrite the pretrained weights.
            load_pretrained_weights(model.asr, pretrained.model_file, pretrained.source)
        return model
