"""Grader-like local evaluation of a separator (``python -m evaluator``, ``bash run.sh``).

``music_demixing`` (the AIcrowd predictor contract), ``budget`` (time limits as data),
``datasets`` and ``demo`` (what to run on), ``harness`` (the resumable run), ``scoring`` and
``oracle`` (MDX SDR and the reference rows), ``reports`` and ``leaderboard`` (what is written),
``memory`` (peak RSS per song). See docs/EVALUATOR.md.
"""
