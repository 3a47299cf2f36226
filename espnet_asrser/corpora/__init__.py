"""Readers and writers of the real IEMOCAP and LibriSpeech release layouts."""
