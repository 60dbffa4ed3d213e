"""Progress bars that read well on a terminal and in a log file."""

import re
import sys

from tqdm.auto import tqdm

LOG_INTERVAL = 30.0  # seconds between the lines a progress bar writes to a log file


def progress(iterable=None, **kwargs):
    """A tqdm progress bar. On a terminal it redraws in place. In a log file (stderr not a
    terminal) it writes plain lines: one when it starts, then at most one every
    LOG_INTERVAL s, and one when done; no carriage returns or cursor moves. Short inner
    bars (``leave=False``) write nothing unless they run longer than LOG_INTERVAL."""
    if sys.stderr.isatty():
        return tqdm(iterable, dynamic_ncols=True, mininterval=0.1, **kwargs)
    if not kwargs.get("leave", True):
        kwargs.setdefault("delay", LOG_INTERVAL)
    return _LogBar(iterable, file=_Lines(sys.stderr), mininterval=LOG_INTERVAL, ncols=100, **kwargs)


class _Lines:
    """The file a log-file progress bar writes to: each redraw becomes one plain line."""

    CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for line in re.split(r"[\r\n]", self.CONTROL.sub("", text)):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """tqdm without a redraw on every ``set_postfix`` (the postfix shows in the next line)."""

    def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)
