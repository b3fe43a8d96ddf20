"""LightSAFT+GPoCM network, its configuration, STFT front end and checkpoint formats."""
