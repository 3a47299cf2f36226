"""Progress of a long loop: a tqdm bar on a terminal, periodic log lines in a log file.

The recipe's jobs write to log files (``run_cmd``), where a bar's carriage returns make an
unreadable wall; there, a line every ``every_s`` seconds (and at the end) says how far the
loop is, with its rate and the time left. On a terminal (an interactive
``asrser_inference``, dumping by hand) the user gets tqdm's bar.
"""

import logging
import sys
import time
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T],
    total: Optional[int] = None,
    desc: str = "",
    unit: str = "utt",
    every_s: float = 30.0,
    stream=None,
) -> Iterator[T]:
    """Yield ``items``, showing how far the loop is on ``stream`` (stderr by default)."""
    stream = stream or sys.stderr
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, file=stream)
        return
    log = logging.getLogger(__name__)
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            log.info(_line(desc, done, total, unit, now - start))
    if done:
        log.info(_line(desc, done, total, unit, time.monotonic() - start))


def _line(desc: str, done: int, total: Optional[int], unit: str, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else float("inf")
    text = f"{desc}: {done}" + (f"/{total} {unit} ({100 * done // total}%)" if total else f" {unit}")
    text += f", {rate:.1f} {unit}/s, {elapsed:.0f} s"
    if total and rate > 0 and done < total:
        text += f", about {(total - done) / rate:.0f} s left"
    return text
