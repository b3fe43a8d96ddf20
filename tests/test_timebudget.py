"""Time-budgeted separation: deadlines hold with an injected slow backend; extras run when time allows."""
from __future__ import annotations

import time

import numpy as np
import pytest

from separation import ArraySource, DeadlineController, Separator, StageTimes, extras_for
from separation.torch_backends import TorchBackend
from tests.helpers import TINY_CONFIG, exact_geometry, music_like
from tests.test_engine import PassThroughBackend

STEP = exact_geometry(TINY_CONFIG).step
EXTRAS = extras_for(TINY_CONFIG.hop_length)


class SlowBackend:
    """Wraps a backend and sleeps ``delays[i]`` seconds (the last one repeats) on call ``i``."""

    name = "slow"

    def __init__(self, inner, delays):
        self.inner, self.delays, self.calls = inner, list(delays), 0
        self.config = inner.config
        self.architecture = inner.architecture

    def separate_spec(self, spec):
        delay = self.delays[min(self.calls, len(self.delays) - 1)]
        self.calls += 1
        time.sleep(delay)
        return self.inner.separate_spec(spec)


def _run(separator, audio, budget_s, pass_s, **kw):
    controller = DeadlineController(deadline=time.monotonic() + budget_s, pass_seconds=pass_s,
                                    extras=EXTRAS, **kw)
    t0 = time.monotonic()
    out = np.concatenate([b for _, b in separator.iter_blocks(ArraySource(audio), budget=controller)], axis=1)
    elapsed = time.monotonic() - t0
    controller.close()
    return out, controller.report(), elapsed


@pytest.mark.parametrize("variant", [*EXTRAS])
def test_each_extra_is_undone_exactly(variant):
    """Shift, swap and polarity are mapped back: with an identity network every variant gives the mixture."""
    audio = music_like(2 * STEP + 123, seed=9)
    sep = Separator(PassThroughBackend(TINY_CONFIG))
    for c in range(2):
        kept = sep.run_windows(ArraySource(audio), [c], variant, times=StageTimes())[0]
        want = audio[c * STEP:c * STEP + kept.shape[1]]
        assert np.abs(kept[0] - want).max() < 1e-5


def test_ample_budget_buys_every_extra(tiny_network):
    audio = music_like(3 * STEP, seed=1)
    sep = Separator(SlowBackend(TorchBackend(tiny_network), [0.02]))
    out, report, elapsed = _run(sep, audio, budget_s=30.0, pass_s=0.05)
    assert report["done"]["variants_per_window"] == [["plain", *[v.name for v in EXTRAS]]] * 3
    assert report["planned"]["extras_per_window"] == len(EXTRAS) and not report["degraded"]
    plain = np.stack(list(Separator(TorchBackend(tiny_network)).separate(audio).values()))
    assert out.shape == plain.shape and not np.allclose(out, plain)  # extras changed the estimate


def test_budget_for_the_plain_pass_only_reproduces_exact_mode(tiny_network):
    audio = music_like(3 * STEP, seed=2)
    sep = Separator(SlowBackend(TorchBackend(tiny_network), [0.6]))
    # Three windows at ~0.6 s: 2.3 s leaves no room for a second pass on any window. The tiny
    # network's own ~0.06 s per window (more on a loaded host) must fit in the slack beside the
    # sleeps; 0.3 s windows in 1.15 s left too little and failed in one of three idle suite runs.
    out, report, elapsed = _run(sep, audio, budget_s=2.3, pass_s=0.6)
    assert report["done"]["variants_per_window"] == [["plain"]] * 3 and report["done"]["fallback_windows"] == []
    plain = np.stack(list(Separator(TorchBackend(tiny_network)).separate(audio).values()))
    assert np.array_equal(out, plain)
    assert elapsed < 2.3


def test_too_small_budget_degrades_but_writes_valid_stems_in_time(tiny_network):
    audio = music_like(4 * STEP, seed=3)
    sep = Separator(SlowBackend(TorchBackend(tiny_network), [0.5]))
    out, report, elapsed = _run(sep, audio, budget_s=1.2, pass_s=0.5)
    assert elapsed < 1.2
    assert out.shape == (4, 4 * STEP, 2) and np.isfinite(out).all()
    fallback = report["done"]["fallback_windows"]
    assert fallback and fallback == list(range(fallback[0], 4))  # the remaining windows, in order
    assert report["degraded"] and "mixture/4 fallback" in report["degradation"]
    for c in fallback:  # the documented fallback: the mixture split evenly
        np.testing.assert_allclose(out[:, c * STEP:(c + 1) * STEP], np.broadcast_to(
            audio[c * STEP:(c + 1) * STEP] / 4, (4, STEP, 2)), atol=1e-7)


def test_slowdown_drops_extras_before_any_window_falls_back(tiny_network):
    audio = music_like(4 * STEP, seed=4)
    # Fast for the first five calls, then the machine gets 6x slower.
    sep = Separator(SlowBackend(TorchBackend(tiny_network), [0.05] * 5 + [0.3]))
    out, report, elapsed = _run(sep, audio, budget_s=2.2, pass_s=0.05)
    variants = report["done"]["variants_per_window"]
    assert len(variants[0]) > 1  # extras while fast
    # Once slow, fewer passes per window (leftover time at the very end may still buy one extra).
    assert all(len(v) < len(variants[0]) for v in variants[2:])
    assert report["done"]["fallback_windows"] == []
    assert elapsed < 2.2 and "extras dropped" in report["degradation"]


def test_a_call_that_overruns_is_abandoned_before_the_deadline(tiny_network):
    audio = music_like(3 * STEP, seed=5)
    sep = Separator(SlowBackend(TorchBackend(tiny_network), [0.05, 5.0]))
    out, report, elapsed = _run(sep, audio, budget_s=1.0, pass_s=0.05, max_extras=0)
    assert elapsed < 1.0
    assert report["done"]["abandoned_at"] == 1 and report["done"]["fallback_windows"] == [1, 2]
    assert np.isfinite(out).all() and out.shape == (4, 3 * STEP, 2)


def test_the_reduced_rung_takes_windows_the_exact_pass_cannot_reach(tiny_network):
    """extras -> exact -> reduced -> mixture/4: with 1.2 s for four windows of a 0.5-s exact pass, the
    exact pass runs while it fits, then the 0.1-s reduced pass (here the same network, so its windows
    must equal the exact output), and no window falls back."""
    audio = music_like(4 * STEP, seed=6)
    sep = Separator(SlowBackend(TorchBackend(tiny_network), [0.5]))
    sep.reduced_backend = SlowBackend(TorchBackend(tiny_network), [0.1])
    out, report, elapsed = _run(sep, audio, budget_s=1.2, pass_s=0.5, max_extras=0, reduced_pass_seconds=0.1)
    assert elapsed < 1.2
    variants, reduced = report["done"]["variants_per_window"], report["done"]["reduced_windows"]
    assert variants[0] == ["plain"] and reduced and reduced == list(range(reduced[0], 4))
    assert report["done"]["fallback_windows"] == [] and "reduced-precision pass" in report["degradation"]
    plain = np.stack(list(Separator(TorchBackend(tiny_network)).separate(audio).values()))
    np.testing.assert_allclose(out, plain, atol=1e-6)


def test_without_time_for_any_pass_the_reduced_rung_falls_back_too():
    controller = DeadlineController(deadline=100.0, pass_seconds=2.0, reduced_pass_seconds=1.0, clock=lambda: 99.5)
    assert controller.plan(0, 1) == []  # 0.5 s left: neither pass fits
    controller = DeadlineController(deadline=100.0, pass_seconds=2.0, reduced_pass_seconds=1.0, clock=lambda: 98.5)
    assert [v.name for v in controller.plan(0, 1)] == ["reduced"]
    controller = DeadlineController(deadline=100.0, pass_seconds=2.0, reduced_pass_seconds=1.0, clock=lambda: 90.0)
    assert [v.name for v in controller.plan(0, 1)][0] == "plain"  # the exact pass whenever it fits
    controller = DeadlineController(deadline=100.0, pass_seconds=2.0, clock=lambda: 98.5)
    assert controller.plan(0, 1) == []  # no rung: the fallback


def test_predictor_plans_with_a_measured_speed_and_reports(tmp_path, tiny_ckpt):
    import soundfile as sf

    from separation.budget import BudgetRule
    from separation.predictor import KitPredictor
    from separation.settings import PredictorSettings

    sf.write(tmp_path / "mix.wav", music_like(2 * STEP), 44100, subtype="FLOAT")
    p = KitPredictor(PredictorSettings(model=tiny_ckpt, budget=BudgetRule.ratio(5.0), threads=1))
    p.prediction_setup()
    assert p.pass_seconds is not None and 0 < p.pass_seconds < 5
    paths = {s: str(tmp_path / f"{s}.wav") for s in ("bass", "drums", "other", "vocals")}
    p.prediction(str(tmp_path / "mix.wav"), paths["bass"], paths["drums"], paths["other"], paths["vocals"])
    report = p.last_budget_report
    assert report["limit_s"] == pytest.approx(5.0 * 2 * STEP / 44100)
    assert report["margin_left_s"] > 0 and report["done"]["windows"] == 2
    for path in paths.values():
        assert sf.read(path)[0].shape == (2 * STEP, 2)


class OneAtATime(SlowBackend):
    """A slow backend that fails if two calls ever overlap (runtimes are not safe to call twice at once)."""

    def __init__(self, inner, delays):
        super().__init__(inner, delays)
        import threading

        self.lock = threading.Lock()

    def separate_spec(self, spec):
        assert self.lock.acquire(blocking=False), "two network calls overlapped"
        try:
            return super().separate_spec(spec)
        finally:
            self.lock.release()


def test_an_abandoned_call_finishes_before_the_next_track_starts(tmp_path, tiny_ckpt):
    import soundfile as sf

    from separation.budget import BudgetRule
    from separation.predictor import KitPredictor
    from separation.settings import PredictorSettings

    sf.write(tmp_path / "mix.wav", music_like(3 * STEP), 44100, subtype="FLOAT")
    p = KitPredictor(PredictorSettings(model=tiny_ckpt, budget=BudgetRule.fixed(3.0), threads=1, cache_dir=None,
                                       extras=False))
    p.prediction_setup()
    slow = OneAtATime(p.separator.backend, [0.05, 2.5, 0.05])
    p.separator.backend = slow
    paths = {s: str(tmp_path / f"{s}.wav") for s in ("bass", "drums", "other", "vocals")}
    p.prediction(str(tmp_path / "mix.wav"), *(paths[s] for s in ("bass", "drums", "other", "vocals")))
    assert p.last_budget_report["done"]["abandoned_at"] == 1 and p.abandoned_calls == 1
    p.prediction(str(tmp_path / "mix.wav"), *(paths[s] for s in ("bass", "drums", "other", "vocals")))
    assert slow.calls >= 3 and p.last_budget_report["done"]["fallback_windows"] == []


def test_stress_benchmark_smoke(tmp_path, tiny_ckpt):
    """The stress benchmark runs with busy CPUs, reports no misses, and writes its report."""
    import json
    import subprocess
    import sys

    import soundfile as sf

    from evaluator.demo import make_demo_song
    from tests.helpers import REPO_ROOT

    song = make_demo_song(seed=1234, duration_s=3.0)
    folder = tmp_path / "data" / "song"
    folder.mkdir(parents=True)
    for name, audio in song.items():
        sf.write(folder / f"{name}.wav", audio, 44100, subtype="FLOAT")
    res = subprocess.run([sys.executable, "-m", "evaluator.stress", str(tiny_ckpt), "--data", str(tmp_path / "data"),
                          "--songs", "1", "--hogs", "1", "--max-seconds", "60", "--threads", "1",
                          "--out", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "out" / "stress.json").read_text())
    assert [b["extras"] for b in doc["batches"]] == [True, False]
    assert all(b["misses"] == 0 and b["mean"] is not None for b in doc["batches"])
    assert "| on | 0 |" in (tmp_path / "out" / "stress.md").read_text()
