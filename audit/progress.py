"""The progress display while `audit run` waits: runs done / failed / total, epochs,
queued jobs and why they wait, ETA.

On a terminal it is a tqdm bar over epochs, with the runs done and the epochs of the runs in
progress in its label. Elsewhere (CI logs, pipes) it prints one line whenever something
changed, never a stream of redraws. The ETA weighs each run by its estimated cost (a
100-epoch ND run counts for more than a 1-epoch MLP), and failed or diverged runs are
counted as such, never as "done".
"""

from __future__ import annotations

import sys
import time
from collections import Counter
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
        costs: dict[str, float] | None = None,
    ) -> None:
        self.store = store
        self.total_runs = total_runs
        self.costs = costs or {}  # run id -> estimated GPU-hours (the plan's)
        self.stream = stream or sys.stderr
        self.use_bar = self.stream.isatty() if bar is None else bar
        self._bar: Any = None
        self._last_line = ""
        self._start: tuple[float, float] | None = None  # (time, cost done) at the first poll

    def update(self, tracked: list[Any], states: dict[str, str]) -> None:
        """Called by launch() after every poll with its runs and the scheduler's states."""
        counts: Counter[str] = Counter()
        epochs_done = epochs_total = 0
        cost_done = cost_total = 0.0
        current, waiting = [], Counter()
        for item in tracked:
            state = self.store.state(item.run_id, states)
            planned = max(state.epochs_planned, 1)
            cost = self.costs.get(item.run_id, 0.0) or planned * 1e-6
            epochs_total += planned
            cost_total += cost
            if state.status in (*FINISHED, "failed"):
                counts[state.status] += 1
                epochs_done += planned
                cost_done += cost
                continue
            done = min(state.epochs_done, state.epochs_planned)
            epochs_done += done
            cost_done += cost * done / planned
            if state.status == "running":
                epochs = (
                    f"{state.epochs_done}/{state.epochs_planned}" if state.epochs_planned else ""
                )
                current.append(f"{_short(item.run_id)} {epochs}".strip())
            elif getattr(item, "pending_reason", None):
                waiting[item.pending_reason] += 1
        label = f"runs {counts['done']}/{self.total_runs} done" + "".join(
            f", {counts[s]} {s}" for s in ("failed", "diverged") if counts[s]
        )
        detail = terminal(", ".join(current[:3]) + (" ..." if len(current) > 3 else ""))
        if waiting:
            queued = terminal(", ".join(f"{n} {why}" for why, n in waiting.most_common(3)))
            detail = "; ".join(filter(None, [detail, f"pending: {queued}"]))
        if self.use_bar:
            eta = self._eta(cost_done, cost_total).lstrip("; ")
            self._draw(label, "; ".join(filter(None, [detail, eta])), epochs_done, epochs_total)
        else:
            line = f"{label}; epochs {epochs_done}/{epochs_total}" + (
                f"; {detail}" if detail else ""
            )
            if line != self._last_line:
                print(line + self._eta(cost_done, cost_total), file=self.stream, flush=True)
                self._last_line = line

    def _eta(self, done: float, total: float) -> str:
        """Remaining time at this session's rate of estimated cost done (runs finished
        before this session excluded)."""
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
            # tqdm's own remaining time counts epochs; the postfix carries the cost-weighted ETA
            self._bar = tqdm(
                total=total,
                unit="epoch",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} epochs [{elapsed}{postfix}]",
            )
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
