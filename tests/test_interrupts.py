"""The harness's own SIGINT / SIGTERM handling: a signal is never lost, never cuts a registration in two, and a
second one does not cut a clean-up short. Signals are raised for real (`signal.raise_signal`), in this process."""

from __future__ import annotations

import gc
import signal
import weakref
from collections.abc import Iterator

import pytest

from harness import interrupts


@pytest.fixture
def handled() -> Iterator[None]:
    interrupts.uninstall()
    interrupts.install()
    try:
        yield
    finally:
        interrupts.uninstall()
        interrupts.install()  # as the suite's conftest left it
        interrupts.reset()


class _Thing:
    pass


def _signal_inside_a_weakref_callback(signum: int) -> list[str]:
    """Where Python prints an exception as "ignored" and goes on: a weakref callback (logging's handler clean-up
    is one). Returns what ran after the signal."""
    after: list[str] = []
    thing = _Thing()
    ref = weakref.ref(thing, lambda _: signal.raise_signal(signum))
    del thing  # the callback runs here, and the signal's handler inside it
    gc.collect()
    after.append("went on")
    assert ref() is None
    return after


def test_an_interrupt_swallowed_by_a_callback_is_raised_at_the_next_check(
    handled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[object] = []
    monkeypatch.setattr("sys.unraisablehook", lambda info: unraisable.append(info.exc_type))
    assert _signal_inside_a_weakref_callback(signal.SIGINT) == ["went on"]
    assert unraisable == [interrupts.Interrupted]  # the raise itself was swallowed
    assert interrupts.requested() == signal.SIGINT
    with pytest.raises(interrupts.Interrupted) as caught:
        interrupts.check()
    assert caught.value.exit_code == 130 and isinstance(caught.value, KeyboardInterrupt)


def test_with_pythons_own_handler_the_same_interrupt_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    interrupts.uninstall()
    try:
        unraisable: list[object] = []
        monkeypatch.setattr("sys.unraisablehook", lambda info: unraisable.append(info.exc_type))
        assert _signal_inside_a_weakref_callback(signal.SIGINT) == ["went on"]
        assert unraisable == [KeyboardInterrupt]  # printed as "ignored"; nothing remembers it
        assert interrupts.requested() is None
        interrupts.check()  # nothing to raise: the run would carry on
    finally:
        interrupts.install()


def test_sigterm_is_an_interrupt_with_143(handled: None) -> None:
    with pytest.raises(interrupts.Interrupted) as caught:
        signal.raise_signal(signal.SIGTERM)
    assert caught.value.exit_code == 143 and str(caught.value) == "SIGTERM"


def test_a_deferred_section_finishes_then_the_signal_is_raised(handled: None) -> None:
    done = []
    with pytest.raises(interrupts.Interrupted), interrupts.deferred():
        signal.raise_signal(signal.SIGINT)
        done.append("registered")  # not cut short
    assert done == ["registered"]


def test_signals_during_clean_up_are_noted_and_the_first_raised_after_it(
    handled: None, capsys: pytest.CaptureFixture[str]
) -> None:
    done = []
    with pytest.raises(interrupts.Interrupted), interrupts.stopping():
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        done.append("cleaned up")
    assert done == ["cleaned up"]
    assert "still stopping" in capsys.readouterr().err


def test_a_second_signal_while_the_first_is_being_handled_is_not_raised(handled: None) -> None:
    with pytest.raises(interrupts.Interrupted):
        signal.raise_signal(signal.SIGINT)
    with interrupts.stopping():  # the clean-up after the first
        signal.raise_signal(signal.SIGINT)
        cleaned = True
    assert cleaned  # and leaving the clean-up raised nothing new: the first is what the caller re-raises


def test_signal_names_round_trip() -> None:
    assert interrupts.signal_number(interrupts.signal_name(signal.SIGTERM)) == signal.SIGTERM
    assert interrupts.signal_number(None) is None
