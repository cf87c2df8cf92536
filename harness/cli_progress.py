"""Progress of ``normconf run``: a rich bar on a terminal, plain lines in a log.

On a terminal (stderr a tty) a transient bar shows the last finished pair, ``case · backend``
(escaped: a backend id in brackets is text, never rich markup).  Elsewhere (CI: stderr or stdout
not a terminal) each finished pair is one line on stderr::

    [12/340] seed_article · torch · pass 0.4 s

``-q`` shows no progress; ``--json`` keeps it on stderr (stdout holds only the JSON).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

#: what :class:`TimedRunner` last finished, per thread (read by the progress callback, which the
#: runner calls from the same thread right after the pair)
_LAST = threading.local()


def pair_outcome(rows) -> tuple[str, float | None]:
    """(worst outcome, seconds: the longest row time, None when no row was timed) of one pair's rows."""
    from normconf.results import SEVERITY

    outcome = max((r.outcome for r in rows), key=lambda o: SEVERITY[o], default="unsupported")
    times = [r.seconds for r in rows if r.seconds is not None]
    return outcome, (max(times) if times else None)


def timed_runner_class():
    """:class:`normconf.runner.Runner` that remembers each finished pair (case, backend, outcome, seconds)."""
    from normconf.runner import Runner

    class TimedRunner(Runner):
        def run_pair(self, lc, backend):
            rows = super().run_pair(lc, backend)
            _LAST.pair = (lc.id, backend, *pair_outcome(rows))
            return rows

    return TimedRunner


def plain_line(done: int, total: int, case: str, backend: str, outcome: str, seconds: float | None) -> str:
    """``[12/340] seed_article · torch · pass 0.4 s``."""
    width = len(str(total))
    tail = f" {seconds:.1f} s" if seconds is not None else ""
    return f"[{done:>{width}}/{total}] {case} · {backend} · {outcome}{tail}"


def _last(desc: str) -> tuple[str, str, str, float | None]:
    pair = getattr(_LAST, "pair", None)
    if pair is not None:
        return pair
    case, _, backend = desc.rpartition(" [")  # the runner's own description: "case [backend]"
    return case or desc, backend.rstrip("]"), "done", None


def progress_factory(total: int, quiet: bool = False, stream=None) -> tuple[Any, Callable | None]:
    """(rich Progress or None, callback ``(done, total, desc)``) for :meth:`Runner.run`."""
    stream = stream or sys.stderr
    if quiet or total < 1:
        return None, None
    lock = threading.Lock()
    tty = stream.isatty() and sys.stdout.isatty()
    if not tty:

        def line(done: int, tot: int, desc: str) -> None:
            case, backend, outcome, secs = _last(desc)
            with lock:
                print(plain_line(done, tot, case, backend, outcome, secs), file=stream, flush=True)

        return None, line
    if total < 2:
        return None, None
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("[bold]normconf"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(file=stream),
        transient=True,
    )
    task = prog.add_task("", total=total)

    def update(done: int, tot: int, desc: str) -> None:
        case, backend, outcome, _ = _last(desc)
        prog.update(task, completed=done, description=escape(f"{case} · {backend} · {outcome}"))

    return prog, update
