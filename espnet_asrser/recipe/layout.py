"""Usage: python -m espnet_asrser.recipe.layout [RUN OPTIONS]     (asrser.sh: eval "$(...)")

Every name of a recipe run, from the run's options: the IEMOCAP data sets, the ASR model
(our A2W model or a ``--pretrained_asr`` one) and its decoding directory, each trained
SER system's config and experiment directory per fold, and the run's results directory.
The stage script asks for them once (printed as shell assignments); the recipe's
programs (``local/evaluate.py``, ``local/make_results.py``) take the same run options
(``run_opts``) and build the same :class:`Layout`, so a name is computed in one place.

Experiment names come from the config path below ``conf/`` and the extra arguments:
``conf/mini/train_a2w.yaml`` with ``--asr_args "--max_epoch 3"`` trains
``exp/asr_mini_train_a2w_max_epoch3``. The IEMOCAP selection (subset, protocol, exc,
max_dur) names the data and SER experiments when it is not the paper's default, so that
other settings never overwrite the default one (``data/iemocap_improvised_fold1_train``).
Results go to ``exp/results/<subset>_<protocol>[_exc<exc>][_maxdur<s>]_<asr model>``.
"""

import argparse
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from espnet_asrser.recipe.systems import (
    ASRSER,
    TABLE_SYSTEMS,
    System,
    ablation_system,
    trained_systems,
)

# Where the ASR (and ASR-SER) read their input: our A2W model the dumped log-mel
# features, a pretrained model the waveforms, which its own frontend turns into features.
FBANK_INPUT = ("dump/fbank", "feats.scp,speech,kaldi_ark")
RAW_INPUT = ("data", "wav.scp,speech,sound")
SER_CONFIGS = ("audio", "text", "combined", "asrser")
# Every IEMOCAP data set of every selection starts so (iemocap_all, iemocap_improvised_...).
IEMOCAP_PREFIX = "iemocap"
# Written by local/prepare_librispeech.py; its "train_set" names the LibriSpeech training
# set: train_960 when the three training subsets are there, train_libri otherwise.
LIBRISPEECH_MARKER = Path("data", ".librispeech.done")
ARCHIVE_SUFFIXES = (".zip", ".tgz", ".tar.gz")


class LayoutError(ValueError):
    """A run option that cannot name a run (a missing config, a malformed ablation)."""


def config_tag(config: str, extra_args: str = "") -> str:
    """``conf/mini/train_a2w.yaml`` + ``--max_epoch 3`` -> ``mini_train_a2w_max_epoch3``."""
    tag = config[len("conf/"):] if config.startswith("conf/") else config
    tag = tag[: -len(".yaml")] if tag.endswith(".yaml") else tag
    tag = tag.replace("/", "_")
    return tag + re.sub(r"[ =/]", "", extra_args.replace("--", "_"))


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options that name a run; ``asrser.sh`` passes them as ``run_opts``."""
    g = parser.add_argument_group("run options (asrser.sh passes them as run_opts)")
    g.add_argument("--subset", default="all", choices=("all", "improvised"))
    g.add_argument(
        "--protocol",
        default="speaker_independent",
        choices=("speaker_independent", "speaker_dependent"),
    )
    g.add_argument("--exc", default="merge", choices=("merge", "drop"))
    g.add_argument("--max_dur", default="20")
    g.add_argument("--folds", default="1 2 3 4 5", help="space-separated fold numbers")
    g.add_argument("--conf_dir", default="conf")
    for name in ("asr", "decode", *SER_CONFIGS):
        g.add_argument(f"--{name}_config", default="", help="default: from --conf_dir")
    g.add_argument("--asr_pre_config", default="", help="default: from --conf_dir; none: off")
    g.add_argument("--asrser_ablations", default="", help="default: from --conf_dir; none: off")
    for name in ("asr", "ser", "decode"):
        g.add_argument(f"--{name}_args", default="", help="extra options, part of the names")
    g.add_argument("--asr_model", default="valid.acc.ave.pth")
    g.add_argument("--ser_model", default="valid.acc_ser.best.pth")
    g.add_argument("--pretrained_asr", default="")
    g.add_argument("--pretrained_asr_config", default="")
    g.add_argument("--pretrained_asr_model", default="")


def _default_configs(opts: argparse.Namespace) -> None:
    conf = opts.conf_dir
    defaults = {"asr": "train_a2w", "decode": "decode_asr"}
    for name in ("asr", "decode", *SER_CONFIGS):
        attr = f"{name}_config"
        if not getattr(opts, attr):
            setattr(opts, attr, f"{conf}/{defaults.get(name, f'train_{name}')}.yaml")
    if not opts.asr_pre_config and os.path.isfile(f"{conf}/pretrain_encoder_ctc.yaml"):
        opts.asr_pre_config = f"{conf}/pretrain_encoder_ctc.yaml"
    if opts.asr_pre_config == "none":
        opts.asr_pre_config = ""
    if not opts.asrser_ablations:
        found = sorted(Path(conf, "ablation").glob("train_asrser_*.yaml"))
        opts.asrser_ablations = " ".join(str(p) for p in found)
    if opts.asrser_ablations == "none":
        opts.asrser_ablations = ""


@dataclass
class PretrainedSpec:
    spec: str  # absolute: ARCHIVE, DIR or CONFIG,MODEL
    name: str  # for its experiments: exp/asr_pretrained_<name>
    files: List[str]  # whose contents stand for it in fingerprints


def _meta_files(meta: Path) -> List[str]:
    """The config and weights an unpacked archive's meta.yaml names: a directory can be
    updated (git pull) without a new meta.yaml."""
    with open(meta, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    found = []
    for section in data.values() if isinstance(data, dict) else ():
        if isinstance(section, dict):
            for key in ("asr_train_config", "asr_model_file"):
                if isinstance(section.get(key), str):
                    found.append(str(meta.parent / section[key]))
    return found


def resolve_pretrained(spec: str, config: str = "", model: str = "") -> Optional[PretrainedSpec]:
    """``--pretrained_asr`` (or ``--pretrained_asr_config/_model``) as absolute paths,
    with the name of its experiments; None when no pretrained ASR is given."""
    if config or model:
        if spec:
            raise LayoutError(
                "give --pretrained_asr or --pretrained_asr_config/--pretrained_asr_model, "
                "not both"
            )
        if not (os.path.isfile(config) and os.path.isfile(model)):
            raise LayoutError("--pretrained_asr_config and --pretrained_asr_model must both name files")
        spec = f"{config},{model}"
    if not spec:
        return None
    if "," in spec:
        parts = spec.split(",", 1)
        for f in parts:
            if not os.path.isfile(f):
                raise LayoutError(
                    f"--pretrained_asr {spec}: {f} does not exist (CONFIG,MODEL: an ESPnet "
                    "ASR config.yaml and its .pth)"
                )
        files = [os.path.abspath(f) for f in parts]
        name = Path(os.path.realpath(parts[1])).parent.name
        resolved = ",".join(files)
    elif os.path.isdir(spec):
        meta = Path(spec, "meta.yaml")
        if not meta.is_file():
            raise LayoutError(
                f"--pretrained_asr {spec} is a directory without meta.yaml: give an unpacked "
                "model-zoo archive, or CONFIG,MODEL"
            )
        resolved = os.path.abspath(spec)
        files = [str(Path(resolved, "meta.yaml")), *_meta_files(Path(resolved, "meta.yaml"))]
        name = Path(resolved).name
    elif os.path.isfile(spec):
        resolved = os.path.abspath(spec)
        files = [resolved]
        name = Path(resolved).name
        for suffix in ARCHIVE_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
    else:
        raise LayoutError(
            f"--pretrained_asr {spec} is neither a local archive (.zip, .tar.gz), an unpacked "
            "archive directory (with meta.yaml) nor CONFIG,MODEL. Model-zoo names are not "
            "downloaded here. On a machine with network access, python -c \"from "
            "espnet_model_zoo.downloader import ModelDownloader as D; "
            f"print(D().download('{spec}'))\" fetches the model and prints where it is (a "
            "zip, or a Hugging Face directory with meta.yaml); copy that here and pass its "
            "local path as --pretrained_asr"
        )
    return PretrainedSpec(resolved, re.sub(r"[^A-Za-z0-9_-]", "_", name), files)


def _ablations(configs: str) -> Dict[str, System]:
    """``train_asrser_<name>.yaml`` -> system ``asrser_<name>``, labelled by the config's
    first line ``# ablation: <text>``."""
    systems = {}
    for config in configs.split():
        stem = Path(config).name[: -len(".yaml")] if config.endswith(".yaml") else ""
        if not stem.startswith("train_asrser_"):
            raise LayoutError(f"ablation config {config}: the name must be train_asrser_<name>.yaml")
        with open(config, encoding="utf-8") as f:
            first = f.readline()
        match = re.match(r"# ablation: *(.*\S)", first)
        if not match:
            raise LayoutError(f"ablation config {config}: its first line must be '# ablation: <text>'")
        system = ablation_system(stem[len("train_asrser_"):], match.group(1))
        systems[system.key] = system
    return systems


@dataclass
class Layout:
    opts: argparse.Namespace
    folds: List[str] = field(init=False)
    setting: str = field(init=False)

    def __post_init__(self) -> None:
        o = self.opts
        _default_configs(o)
        self.folds = o.folds.split()
        bad = [k for k in self.folds if k not in "12345" or len(k) != 1]
        if bad or not self.folds:
            raise LayoutError(f"--folds takes fold numbers 1 to 5, got '{o.folds}'")
        configs = [o.asr_config, o.decode_config, *(getattr(o, f"{n}_config") for n in SER_CONFIGS)]
        for config in configs + o.asr_pre_config.split() + o.asrser_ablations.split():
            if not os.path.isfile(config):
                raise LayoutError(f"config {config} does not exist")
        self.ablations = _ablations(o.asrser_ablations)
        self.pretrained = resolve_pretrained(
            o.pretrained_asr, o.pretrained_asr_config, o.pretrained_asr_model
        )
        setting = ""
        if o.subset != "all":
            setting += f"_{o.subset}"
        if o.protocol != "speaker_independent":
            setting += f"_{o.protocol}"
        if o.exc != "merge":
            setting += f"_exc{o.exc}"
        if o.max_dur != "20":
            setting += f"_maxdur{o.max_dur}"
        self.setting = setting
        self.iemocap = f"{IEMOCAP_PREFIX}{setting}"
        self.ser_prefix = f"exp/ser{setting}"

    # ----------------------------------------------------------------- the ASR model
    @staticmethod
    def libri_train_set() -> str:
        """The LibriSpeech training set's name, once its data are prepared (else "")."""
        try:
            marker = json.loads(LIBRISPEECH_MARKER.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        return marker.get("train_set") or ""

    @property
    def asr_stats(self) -> str:
        """Normalisation statistics of our A2W model (its LibriSpeech training set)."""
        return f"exp/asr_stats_{self.libri_train_set()}"

    @property
    def asr_key(self) -> str:
        return f"pretrained_{self.pretrained.name}" if self.pretrained else "a2w"

    @property
    def asr_label(self) -> str:
        return f"pretrained: {self.pretrained.name}" if self.pretrained else "A2W"

    @property
    def asr_exp(self) -> str:
        if self.pretrained:
            return f"exp/asr_{self.asr_key}"
        return f"exp/asr_{config_tag(self.opts.asr_config, self.opts.asr_args)}"

    @property
    def asr_pre_exp(self) -> str:
        pre = self.opts.asr_pre_config
        return f"exp/asr_{config_tag(pre)}" if pre and not self.pretrained else ""

    @property
    def asr_model_file(self) -> str:
        return f"{self.asr_exp}/{'model.pth' if self.pretrained else self.opts.asr_model}"

    @property
    def asr_input(self) -> Sequence[str]:
        return RAW_INPUT if self.pretrained else FBANK_INPUT

    @property
    def decode_tag(self) -> str:
        return config_tag(self.opts.decode_config, self.opts.decode_args)

    @property
    def asr_decode_dir(self) -> str:
        model = Path(self.asr_model_file).name
        return f"{self.asr_exp}/decode_{self.decode_tag}_{model[:-4] if model.endswith('.pth') else model}"

    # ----------------------------------------------------------------- SER systems
    def ser_config(self, system: str) -> str:
        if system in self.ablations:
            return self.opts.asrser_ablations.split()[list(self.ablations).index(system)]
        return getattr(self.opts, f"{system}_config")

    def ser_exp(self, system: str, fold: str) -> str:
        """The experiment directory of a trained system's model of one fold. ASR-SER
        models carry the pretrained ASR's name: runs with either ASR model coexist."""
        suffix = f"_{self.asr_key}" if self.pretrained and system.startswith(ASRSER) else ""
        tag = config_tag(self.ser_config(system), self.opts.ser_args)
        return f"{self.ser_prefix}_fold{fold}_{tag}{suffix}"

    def ser_input(self, system: str) -> Sequence[str]:
        """What a trained system's model reads as ``speech``: ASR-SER reads what its ASR
        part reads, the baselines the dumped features."""
        return self.asr_input if system.startswith(ASRSER) else FBANK_INPUT

    @property
    def trained(self) -> List[str]:
        return trained_systems(list(self.ablations))

    @property
    def scored(self) -> List[System]:
        """The rows of the run's results: the paper's systems, then the ablations."""
        return [*TABLE_SYSTEMS, *self.ablations.values()]

    # ----------------------------------------------------------------- results
    @property
    def results_dir(self) -> str:
        o = self.opts
        name = f"{o.subset}_{o.protocol}"
        if o.exc != "merge":
            name += f"_exc{o.exc}"
        if o.max_dur != "20":
            name += f"_maxdur{o.max_dur}"
        return f"exp/results/{name}_{self.asr_key}"

    @property
    def oov_dir(self) -> str:
        """The IEMOCAP selection's OOV rate against the word token list."""
        return f"data/token_list/word/{self.iemocap}"

    def data_set(self, fold: str, part: str) -> str:
        return f"{self.iemocap}_fold{fold}_{part}"

    def run_opts(self) -> List[str]:
        """The resolved run options: every later program builds this same layout."""
        o = self.opts
        names = [
            "subset", "protocol", "exc", "max_dur", "folds", "conf_dir",
            *(f"{n}_config" for n in ("asr", "decode", *SER_CONFIGS)),
            "asr_pre_config", "asrser_ablations", "asr_args", "ser_args", "decode_args",
            "asr_model", "ser_model",
        ]
        opts = []
        for name in names:
            value = getattr(o, name)
            if name in ("asr_pre_config", "asrser_ablations") and not value:
                value = "none"
            opts += [f"--{name}", value]
        if self.pretrained:
            opts += ["--pretrained_asr", self.pretrained.spec]
        return opts

    def shell(self) -> str:
        """Shell assignments of every name the stage script uses."""
        q = shlex.quote
        p = self.pretrained
        values = {
            "iemocap": self.iemocap,
            "oov_dir": self.oov_dir,
            "ser_prefix": self.ser_prefix,
            "results_dir": self.results_dir,
            "pretrained": "true" if p else "false",
            "pretrained_asr": p.spec if p else "",
            "asr_key": self.asr_key,
            "asr_exp": self.asr_exp,
            "asr_pre_exp": self.asr_pre_exp,
            "asr_pre_model": f"{self.asr_pre_exp}/valid.loss.best.pth" if self.asr_pre_exp else "",
            "asr_train_config": f"{self.asr_exp}/config.yaml",
            "asr_model_file": self.asr_model_file,
            "asr_decode_dir": self.asr_decode_dir,
            "libri_train_set": self.libri_train_set(),
            "asr_stats": self.asr_stats,
            "asr_pre_config": self.opts.asr_pre_config,
            **{f"{n}_config": getattr(self.opts, f"{n}_config") for n in ("asr", "decode", *SER_CONFIGS)},
        }
        lines = [f"{k}={q(v)}" for k, v in values.items()]
        arrays = {
            "pretrained_files": p.files if p else [],
            "asr_input": list(self.asr_input),
            "trained_systems": self.trained,
            "run_opts": self.run_opts(),
        }
        lines += [f"{k}=({' '.join(q(v) for v in vs)})" for k, vs in arrays.items()]
        for name, value in (
            ("ser_config", {s: self.ser_config(s) for s in self.trained}),
            ("ser_exp", {f"{s},{k}": self.ser_exp(s, k) for s in self.trained for k in self.folds}),
        ):
            items = " ".join(f"[{q(k)}]={q(v)}" for k, v in value.items())
            lines.append(f"declare -gA {name}=({items})")
        return "\n".join(lines) + "\n"


def layout_from_args(argv: Optional[Sequence[str]] = None, description: str = "") -> Layout:
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    add_run_options(parser)
    return Layout(parser.parse_args(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        layout = layout_from_args(argv)
    except (LayoutError, OSError, yaml.YAMLError) as e:
        print(f"asrser.sh: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(layout.shell())
    return 0


if __name__ == "__main__":
    sys.exit(main())
