"""Our attention modules in ESPnet's attention plots (``att_ws/`` and tensorboard).

ESPnet's ``Trainer.plot_attention`` forwards a few validation utterances one by one
(``--num_att_plot``) through ``calculate_all_attentions``, which hooks every module and
keeps the outputs of those it knows by class: ``AttLoc``, ``MultiHeadedAttention``, ...
Our A2W decoder's :class:`~espnet_asrser.asr.location_attention.LocationAwareAttention`
returns ``(context, weights)`` as ``AttLoc`` does, but is not one: ``AttLoc``'s location
convolution has an odd kernel (``2 * aconv_filts + 1``), which cannot express the paper's
kernel of 100, its step takes other arguments, and its parameters have other names.

So, for the duration of ESPnet's own ``plot_attention`` only, each of our attention
modules gets a class derived from both its own class and the ESPnet class whose output it
matches (:data:`PLOTTED_AS`). Methods, parameters, state-dict names and numerics stay
those of our class (it comes first in the method resolution order); only ``isinstance``
checks also see ESPnet's class. The original class is restored afterwards, also on error.
This is a class change on our own module objects, not a patch of ESPnet: there is no
argument or registry through which ESPnet's plotter accepts another class.
"""

import contextlib
from typing import Dict, Iterator, List, Tuple, Type

import torch
from espnet.nets.pytorch_backend.rnn.attentions import AttLoc
from espnet2.train.trainer import Trainer

from espnet_asrser.asr.location_attention import LocationAwareAttention

# Our attention class -> the ESPnet class whose output convention it shares, and so whose
# branch of ``calculate_all_attentions`` records it: AttLoc keeps the (B, T) weights of
# every call, one row of the picture per decoder step.
PLOTTED_AS: Dict[Type[torch.nn.Module], Type[torch.nn.Module]] = {
    LocationAwareAttention: AttLoc,
}

_plot_classes: Dict[Type[torch.nn.Module], Type[torch.nn.Module]] = {}


def _plot_class(cls: Type[torch.nn.Module], espnet_cls: Type[torch.nn.Module]) -> type:
    """``cls`` with ``espnet_cls`` as a further base (made once per class)."""
    if cls not in _plot_classes:
        _plot_classes[cls] = type(
            cls.__name__,
            (cls, espnet_cls),
            {
                "__module__": __name__,
                "__qualname__": f"{cls.__qualname__}[plotted as {espnet_cls.__name__}]",
                "__doc__": f"{cls.__name__}, seen by ESPnet's attention plots as "
                f"{espnet_cls.__name__}; only while they run.",
            },
        )
    return _plot_classes[cls]


@contextlib.contextmanager
def visible_attentions(model: torch.nn.Module) -> Iterator[List[str]]:
    """Within the block, our attention modules in ``model`` pass ESPnet's class checks.

    Yields the names of the modules concerned; every one gets its own class back on exit.
    """
    changed: List[Tuple[torch.nn.Module, type]] = []
    names: List[str] = []
    try:
        for name, module in model.named_modules():
            cls = type(module)
            espnet_cls = next(
                (e for ours, e in PLOTTED_AS.items() if isinstance(module, ours)), None
            )
            if espnet_cls is None or isinstance(module, espnet_cls):
                continue
            module.__class__ = _plot_class(cls, espnet_cls)
            changed.append((module, cls))
            names.append(name)
        yield names
    finally:
        for module, cls in changed:
            module.__class__ = cls


class AttentionPlotMixin:
    """For an ESPnet ``Trainer`` subclass: its attention plots include our attention.

    Put it before ``Trainer`` in the bases; ESPnet's ``plot_attention`` does all the work.
    """

    @classmethod
    def plot_attention(cls, model, output_dir, summary_writer, iterator, reporter, options):
        with visible_attentions(model):
            super().plot_attention(
                model=model,
                output_dir=output_dir,
                summary_writer=summary_writer,
                iterator=iterator,
                reporter=reporter,
                options=options,
            )


class PlottingTrainer(AttentionPlotMixin, Trainer):
    """ESPnet's Trainer, whose ``att_ws/`` also shows our A2W decoder's attention."""
