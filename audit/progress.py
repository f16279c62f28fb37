"""The progress display while `audit run` waits: runs done / total, epochs, ETA.

On a terminal it is a tqdm bar over epochs (so the ETA follows training, not run counts),
with the runs done and the epochs of the runs in progress in its label. Elsewhere (CI
logs, pipes) it prints one line whenever something changed, never a stream of redraws.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from audit.escape import terminal
from audit.store import FINISHED, Store


class Progress:
    def __init__(
        self,
        store: Store,
        total_runs: int,
        *,
        stream: TextIO | None = None,
        bar: bool | None = None,
    ) -> None:
        self.store = store
        self.total_runs = total_runs
        self.stream = stream or sys.stderr
        self.use_bar = self.stream.isatty() if bar is None else bar
        self._bar: Any = None
        self._last_line = ""
        self._start: tuple[float, int] | None = None  # (time, epochs done) at the first poll

    def update(self, tracked: list[Any], states: dict[str, str]) -> None:
        """Called by launch() after every poll with its runs and the scheduler's states."""
        done = epochs_done = epochs_total = 0
        current = []
        for item in tracked:
            state = self.store.state(item.run_id, states)
            epochs_total += max(state.epochs_planned, 1)
            if state.status in (*FINISHED, "failed"):
                done += 1
                epochs_done += max(state.epochs_planned, 1)
                continue
            epochs_done += min(state.epochs_done, state.epochs_planned)
            if state.status == "running":
                epochs = (
                    f"{state.epochs_done}/{state.epochs_planned}" if state.epochs_planned else ""
                )
                current.append(f"{_short(item.run_id)} {epochs}".strip())
        label = f"runs {done}/{self.total_runs} done"
        detail = terminal(", ".join(current[:3]) + (" ..." if len(current) > 3 else ""))
        if self.use_bar:
            self._draw(label, detail, epochs_done, epochs_total)
        else:
            line = f"{label}; epochs {epochs_done}/{epochs_total}" + (
                f"; {detail}" if detail else ""
            )
            if line != self._last_line:
                print(line + self._eta(epochs_done, epochs_total), file=self.stream, flush=True)
                self._last_line = line

    def _eta(self, done: int, total: int) -> str:
        """Remaining time at the epoch rate of this session (runs finished earlier excluded)."""
        now = time.monotonic()
        if self._start is None:
            self._start = (now, done)
        start, base = self._start
        if done <= base or done >= total:
            return ""
        seconds = (total - done) * (now - start) / (done - base)
        return f"; ETA {int(seconds // 60)}m{int(seconds % 60):02d}s"

    def _draw(self, label: str, detail: str, n: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, unit="epoch", file=self.stream, dynamic_ncols=True)
        self._bar.total = total
        self._bar.set_description(label, refresh=False)
        self._bar.set_postfix_str(detail, refresh=False)
        self._bar.update(n - self._bar.n)

    def write(self, message: str) -> None:
        """An event line, above the bar on a terminal (so neither overwrites the other).
        Messages quote run output and errors: escape sequences in them are made visible."""
        message = terminal(message, keep_newlines=True)
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _short(run_id: str) -> str:
    """The readable slug of a run id without its hash (progress lines stay short)."""
    return run_id.rsplit("-", 1)[0]
