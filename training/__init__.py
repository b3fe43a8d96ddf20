"""Training recipe of the kit's default LightSAFT+GPoCM checkpoint.

``midi_parts`` reads MIDI songs into parts, ``stem_map`` holds the reviewed part -> stem map,
``render`` turns songs into MDX-layout stems with fluidsynth, ``dataset`` draws random training
crops, and ``train`` is the training entry point (``python -m training.train``).
"""
