"""Graceful stops: SIGTERM, SIGUSR2 and SIGINT end training at the end of an iteration.

SLURM sends SIGTERM on preemption and ``scancel``, and SIGUSR2 before the time limit
(``--signal=USR2@<signal_delay_s>``); Ctrl-C sends SIGINT. The handler only records the
signal; the loop checks it once per iteration, writes a checkpoint and calls ``finish``:
- under submitit, submitit's own handler for that signal then runs (it requeues the job
  on SIGUSR2 and exits with status 255; it only logs SIGTERM), exactly as if it had
  received the signal itself;
- otherwise, and after a handler that returns, the process exits with 128 + the signal
  number (143, 140, 130), the status of a process killed by that signal, which SLURM's
  requeue and shells read as "stopped by a signal".
A second Ctrl-C while the stop is pending raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


class GracefulStop:
    """Context manager installing the handlers (main thread only; elsewhere a no-op)."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.received is None:
            self.received = signum
            log.warning(
                "%s received: saving a checkpoint at the end of this iteration, then exiting",
                signal.Signals(signum).name,
            )

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def finish(self) -> None:
        """Hand the recorded signal to whoever handled it before us, then exit 128 + signum.

        A DDP rank that stops because another rank was signalled exits as for SIGTERM."""
        signum = self.received if self.received is not None else signal.SIGTERM
        previous = self._previous.get(signum)
        self.__exit__()
        if isinstance(previous, Callable) and previous is not signal.default_int_handler:
            previous(signum, None)  # submitit: checkpoint_and_try_requeue / bypass
        log.warning("stopped by %s after saving a checkpoint", signal.Signals(signum).name)
        raise SystemExit(128 + signum)
