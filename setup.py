"""espnet-asrser: an ESPnet2 plugin for speech emotion recognition from A2W ASR decoder states.

Versions are pinned to a set measured to install and run together on CPU-only machines
(see README.md, "Two commands"): espnet 202511 imports torchaudio at task-import time, and
PyPI's torchaudio wheels only load beside the torch build of the same version.
"""

from setuptools import find_packages, setup

install_requires = [
    "espnet==202511",
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "kaldiio==2.18.1",
    "sentencepiece==0.2.0",
    "soundfile==0.14.0",
    "PyYAML==6.0.4",
    # ESPnet's trainer imports these unless use_tensorboard/use_matplotlib are false.
    "tensorboard==2.21.0",
    "matplotlib==3.11.2",
    # Speech synthesis for the built-in mini corpora (libespeak-ng ships in the wheel).
    "espeakng-loader==0.2.4",
    # Model-zoo archives: ModelDownloader().unpack_local_file() works offline.
    "espnet_model_zoo==0.1.7",
    # Progress bars on a terminal (espnet_asrser.utils.progress); ESPnet's own pin.
    "tqdm==4.70.1",
]

setup(
    name="espnet-asrser",
    version="0.1.0",
    description="Speech emotion recognition combined with an acoustic-to-word ASR model, "
    "as an ESPnet2 plugin (Feng, Ueno, Kawahara, Interspeech 2020)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_asrser", "espnet_asrser.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=install_requires,
    extras_require={"test": ["pytest==9.2.0"]},
    license="Apache-2.0",
)
