"""Small shared helpers: the Kaldi-style table reader and writer, audio headers and the
checks of the data files given to training."""
