"""Published MDX 2021 Leaderboard A figures (mean SDR in dB over the hidden MDXDB21 test set).

These were measured by the challenge on MDXDB21, songs nobody outside the organisers has.
They are shown beside a local run for orientation only: a figure from another data set (the
demo set, MUSDB18, your own songs) is not comparable with them.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PublishedRow:
    system: str
    sdr: float


#: Where these numbers come from, printed with every table that shows them.
LEADERBOARD_SOURCE = "MDX Challenge 2021, Leaderboard A, MDXDB21 hidden test set (published)"

LEADERBOARD_A: tuple[PublishedRow, ...] = (
    PublishedRow("Hybrid Demucs", 7.328),
    PublishedRow("KUIELAB-MDX-Net", 7.236),
    PublishedRow("Demucs48-HQ", 5.873),
    PublishedRow("LightSAFT+GPoCM", 5.394),
    PublishedRow("X-UMX", 5.372),
    PublishedRow("UMX", 5.042),
)
