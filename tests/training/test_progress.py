"""Progress as the place stderr goes asks: bars on a terminal (the step bar only for a slow
epoch), one log line per epoch elsewhere, nothing when off."""

from __future__ import annotations

import io
import logging

from hamnet_jax import terminal_progress
from hamnet_jax.training.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = {"epoch": 1, "val_loss": 1.25, "val_mae": 3.5, "train_loss": 2.0}


def test_a_terminal_gets_bars_and_a_step_bar_once_an_epoch_is_slow(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(terminal_progress, "DELAY", 0.0)  # every epoch counts as slow
    shown = Progress(True, 2, stream=screen)
    assert list(shown.steps(iter(range(5)), 5, 0)) == [0, 1, 2, 3, 4]
    shown.epoch_done(RECORD)
    shown.close()
    text = screen.getvalue()
    assert "epoch 1:" in text and "/5 " in text and "step" in text  # the step bar
    assert "train" in text and "1/2" in text and "val_mae=3.500" in text  # the epoch bar


def test_a_fast_epoch_shows_no_step_bar():
    screen = Terminal()
    shown = Progress(True, 2, stream=screen)
    list(shown.steps(iter(range(5)), 5, 0))  # far under STEP_BAR_DELAY
    assert "epoch 1" not in screen.getvalue()


def test_a_file_gets_one_line_per_epoch_and_quiet_gets_nothing(caplog):
    caplog.set_level(logging.INFO, "hamnet_jax")
    logfile = io.StringIO()  # not a terminal
    shown = Progress(True, 2, stream=logfile)
    assert list(shown.steps(iter(range(3)), 3, 0)) == [0, 1, 2]
    shown.epoch_done(RECORD)
    assert logfile.getvalue() == ""
    assert [r.getMessage() for r in caplog.records][-1].startswith("train epoch 1/2: val_loss 1.2500, val_mae 3.5000 (")
    caplog.clear()
    quiet = Progress(False, 2, stream=Terminal())
    quiet.epoch_done(RECORD)
    assert caplog.records == []


def test_long_loops_outside_training_get_a_bar_on_a_terminal_only(monkeypatch):
    from hamnet_jax.terminal_progress import progress_bar

    monkeypatch.setattr(terminal_progress, "DELAY", 0.0)
    screen = Terminal()
    assert list(progress_bar(iter("abc"), 3, "predict", "chunk", stream=screen)) == ["a", "b", "c"]
    assert "predict" in screen.getvalue()
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):  # a file; --quiet
        assert list(progress_bar(iter("abc"), 3, "predict", "chunk", enabled, stream=stream)) == ["a", "b", "c"]
        assert stream.getvalue() == ""


def test_a_job_of_named_steps_gets_a_step_bar_on_a_terminal_only(monkeypatch):
    from hamnet_jax.terminal_progress import StepBar

    monkeypatch.setattr(terminal_progress, "DELAY", 0.0)
    screen = Terminal()
    bar = StepBar(3, "export onnx", stream=screen)
    for step in ("calibrate", "convert", "check against JAX"):
        bar(step)
    bar.close()
    assert "export onnx: check against JAX" in screen.getvalue() and "3/3" in screen.getvalue()
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):  # a file; --quiet
        quiet = StepBar(3, "export onnx", enabled, stream=stream)
        quiet("convert")
        quiet.close()
        assert stream.getvalue() == ""
