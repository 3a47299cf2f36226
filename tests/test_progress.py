"""espnet_asrser.utils.progress: log lines when not on a terminal, a bar on one."""

import io
import logging

from espnet_asrser.utils.progress import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_off_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="espnet_asrser.utils.progress"):
        assert list(progress(range(5), desc="job 1/2", every_s=0.0, stream=io.StringIO())) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6  # one per item (every_s 0) and the final one
    assert lines[-1].startswith("job 1/2: 5/5 utt (100%), ")
    assert "s left" in lines[0] and "s left" not in lines[-1]


def test_a_bar_on_a_terminal(caplog):
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger="espnet_asrser.utils.progress"):
        assert list(progress(iter("abc"), total=3, desc="decoding", stream=stream)) == ["a", "b", "c"]
    assert "decoding: 100%" in stream.getvalue() and "3/3" in stream.getvalue()
    assert not caplog.records
