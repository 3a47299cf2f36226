"""The run description of the egs2/iemocap_asrser recipe, for its stage script and programs.

* :mod:`~espnet_asrser.recipe.layout`: every name of a run (data sets, experiment and
  decoding directories, config tags, the results directory) from the run's options;
  ``asrser.sh`` asks it once and the recipe's programs build it from the same options;
* :mod:`~espnet_asrser.recipe.systems`: the SER systems of the paper's Tables 1, 4 and 5
  (which model, which transcripts) and the paper's numbers for each table;
* :mod:`~espnet_asrser.recipe.fingerprint`: what a step's inputs were, for its ``.done``.

Nothing here imports torch or ESPnet: the stage script calls these modules many times.
"""
