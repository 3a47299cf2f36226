"""Command-line entry points (python -m espnet_asrser.bin.<name>)."""
