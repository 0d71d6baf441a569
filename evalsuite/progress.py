"""Progress bars that stay readable in a redirected log.

Every progress bar of the suite is made here (:func:`progress`, a drop-in for ``tqdm.tqdm``).
On a terminal it is tqdm's bar. When standard error is not a terminal (a log file, CI), it
writes one plain line per ``EVALSUITE_PROGRESS_INTERVAL`` seconds (default 30) and one when
it finishes (a transient ``leave=False`` bar only if it wrote a line before): no carriage returns, no cursor movement, so nested bars do not fill the log with
escape codes (one run used to write 1.4 MB of them).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

from tqdm import tqdm as _tqdm

ENV_INTERVAL = "EVALSUITE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def interval() -> float:
    """Seconds between two progress lines in a log (``$EVALSUITE_PROGRESS_INTERVAL``, default 30)."""
    try:
        value = float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


class LineProgress(_tqdm):
    """tqdm writing a plain line (``desc: n/total [elapsed, rate]``) instead of redrawing a bar."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(mininterval=interval(), maxinterval=max(interval(), 1.0), miniters=1, dynamic_ncols=False, ncols=None,
                      ascii=True, bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self._last_line, self._last_time, self._final = "", time.monotonic(), False
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        # tqdm calls this on its own schedule and on every set_postfix / refresh: rate-limit here
        if msg == "" or self.n <= 0:  # "" is tqdm clearing a finished bar: nothing to clear in a log
            return True
        now = time.monotonic()
        if not self._final and now - self._last_time < interval():
            return True
        line = (msg or self.__str__()).strip()
        if line and line != self._last_line:
            self._last_line, self._last_time = line, now
            self.fp.write(line + "\n")
            self.fp.flush()
        return True

    def close(self) -> None:
        if self.disable:
            return
        if self.n > 0 and (self.leave or self._last_line):  # a short transient bar leaves no line
            self._final = True
            self.display()  # the final count, once
        self.disable = True
        self._decr_instances(self)  # what tqdm's close does, without its trailing newline / carriage return


def on_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default: standard error) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(*args: Any, **kwargs: Any) -> _tqdm:
    """A progress bar (``tqdm.tqdm``'s arguments): tqdm's bar on a terminal, plain periodic lines otherwise."""
    if on_terminal(kwargs.get("file")):
        return _tqdm(*args, **kwargs)
    if kwargs.get("disable") is None and "disable" in kwargs:
        kwargs["disable"] = False  # tqdm's disable=None means "off when not a TTY": here it means a log line
    return LineProgress(*args, **kwargs)


tqdm = progress
