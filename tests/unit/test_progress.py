"""The progress line: one line per 10 % off a terminal, redrawn in place on one."""

from __future__ import annotations

import io

from streams.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_prints_a_line_per_ten_percent() -> None:
    stream = io.StringIO()
    bar = Progress("job", 40, stream)
    for done in range(41):
        bar.update(done, f"{done} done")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "job:   0% 0 done"
    assert lines[-1] == "job: 100% 40 done"
    assert len(lines) == 11


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = _Terminal()
    bar = Progress("job", 10, stream, interval=0)
    bar.update(5, "half")
    bar.message("a note")
    bar.update(10, "all")
    bar.close()
    text = stream.getvalue()
    assert text.startswith("\rjob: [##########..........]  50% half")
    assert "\ra note" in text
    assert text.endswith("\rjob: [####################] 100% all\n")
