"""Graceful interrupts: SIGINT and SIGTERM ask a run to stop after the current epoch.

:func:`stop_on_signals` installs handlers only around the training loop and restores the
previous ones afterwards. The first signal calls ``on_signal`` (which sets a stop flag);
a second one stops at once, for a user who does not want to wait: ``KeyboardInterrupt``
for SIGINT, ``SystemExit(128 + signum)`` otherwise.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["SIGNALS", "stop_on_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(on_signal: Callable[[int], None]) -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM call ``on_signal(signum)`` instead of ending the
    process. Yields the list of received signal numbers. Outside the main thread (where
    handlers cannot be installed) it does nothing."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        if received:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        received.append(signum)
        on_signal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
