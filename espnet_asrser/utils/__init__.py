"""Small shared helpers: strict readers for Kaldi-style data files."""
