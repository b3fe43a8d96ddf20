"""Facts shared by every part of the kit: sample rate, channel count, source order.

Everything else imports these names; nothing else spells them out.
"""
from __future__ import annotations

KIT_NAME = "mdx-kit"
KIT_VERSION = "0.2.0"

#: The MDX grader and the original model both assume 44.1 kHz stereo.
SAMPLE_RATE = 44100
N_AUDIO_CHANNELS = 2

#: Output order of the kit, and the condition index of each source in the original model
#: (``0 = vocals, 1 = drums, 2 = bass, 3 = other``).
SOURCES: tuple[str, ...] = ("vocals", "drums", "bass", "other")
CONDITION_INDEX: dict[str, int] = {name: i for i, name in enumerate(SOURCES)}
N_SOURCES = len(SOURCES)

#: The order in which the AIcrowd predictor interface passes output paths.
PREDICTION_ARGUMENT_ORDER: tuple[str, ...] = ("bass", "drums", "other", "vocals")
