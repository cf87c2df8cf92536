"""``normconf``: run, validate and report BatchNorm conformance.

Exit codes of ``normconf run`` (the ``EXIT_*`` constants below):

* 0 (``EXIT_OK``): every case × backend pair as expected (an ``error`` that the
  case's ``expect:`` declares is as expected).
* 1 (``EXIT_UNEXPECTED``): some pair not as expected with a ``pass``,
  ``explained`` or ``mismatch`` outcome (an unexpected mismatch or explanation,
  or an expectation that no longer holds).
* 2 (``EXIT_USAGE``): invalid input or usage (the message names file, line and
  field); nothing run, nothing written.
* 3 (``EXIT_ERROR``): some pair not as expected whose outcome is ``error``
  (the backend crashed, timed out or raised).
* 4 (``EXIT_UNAVAILABLE``): a requested backend (named by ``--backend``, or any
  registered backend when ``--backend`` is not given) is unavailable; the
  summary names what to install; or a backend named by ``--backend``,
  ``--native`` or ``--adapter`` ran none of the selected cases (it refused every
  one: a run that tested nothing is not green).  ``--allow-unavailable`` reports
  such backends as skipped instead, without effect on the exit code.
* 5 (``EXIT_WRITE``): the run finished but its reports could not be written
  (full disk, read-only or vanished folder, I/O error); the previous reports in
  ``--out`` are unchanged (normconf.report.write_reports).
* 128 + signum: interrupted (130 SIGINT, 143 SIGTERM).

When several apply the most serious wins: 5 over 4 over 3 over 1 (reports
that could not be written, a run that could not test a backend, then one whose
backend crashed, then a wrong result); an interrupted run exits 128 + signum
even when its partial reports could not be written (the message says so).
The reports are written in every case but 2 and 5.  ``--out`` is checked (a
writable folder, not a dangling or looping link, enough free space) and locked
before anything runs: a second run into the same folder exits 2 at once.
Frameworks are imported only by the worker processes of the selected backends,
so ``normconf --help`` imports none.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from normconf.cli_common import (  # noqa: E402,F401
    UsageError,
    _csv_list,
    _select_backends,
    add_output_options,
    named_backends,
    select_cases,
)
from normconf.cli_info import cmd_backends, cmd_schema  # noqa: E402,F401
from normconf.summary import (  # noqa: F401 (the exit codes and verdicts, re-exported)
    EXIT_ERROR,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    EXIT_WRITE,
    UNAVAILABLE_PREFIX,
    print_json,
    print_summary,
    run_exit_code,
    run_json,
    tested_nothing,
    unavailable_backends,
)


def version_text() -> str:
    """``normconf --version``: the package's version and the Python running it."""
    from normconf import __version__

    return f"normconf {__version__} (Python {platform.python_version()}, {sys.executable})"


def environment(versions: dict[str, str]) -> dict[str, Any]:
    """Where a run happened: Python, OS, CPU, every backend's version."""
    import numpy as np

    from normconf import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "normconf": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "device": "cpu",
        "backend_versions": dict(sorted(versions.items())),
    }


#: subfolder of ``--out`` that receives the results of an interrupted run (``meta.partial`` true);
#: the complete report of an earlier run in ``--out`` itself is left untouched
PARTIAL_DIR = "partial"


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM; ``signum`` says which (exit status 128 + signum)."""

    def __init__(self, signum: int = 2):
        super().__init__(signum)
        self.signum = signum


def _check_run_args(args: argparse.Namespace) -> None:
    """Usage errors found before anything runs or is written; then ``--out`` is locked (``args.out_lock``).

    ``--out`` must be a folder or creatable as one (its nearest existing ancestor a folder): not a
    dangling symbolic link, not a link loop, on a filesystem with at least
    ``normconf.report.estimated_report_bytes`` free, writable (a staging-named folder is created and
    removed again) and not locked by another run.  A folder that does not exist is not created here.
    """
    import errno
    import secrets
    import shutil
    import stat

    from normconf import report

    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1 (got {args.jobs})")
    if not (args.timeout > 0) or args.timeout == float("inf"):
        raise UsageError(f"--timeout must be a number of seconds > 0 (got {args.timeout:g})")
    if args.max_elements < 1:
        raise UsageError(f"--max-elements must be at least 1 (got {args.max_elements})")
    out = Path(args.out)

    def refuse(detail: str) -> None:
        raise UsageError(f"--out {args.out}: {detail}")

    existing = None  # --out itself, or its nearest existing ancestor
    absolute = out.absolute()
    for i, p in enumerate([absolute, *absolute.parents]):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            if os.path.islink(p):
                refuse(f"{'is' if i == 0 else f'{p} is'} a dangling symbolic link (to {os.readlink(p)})")
            continue
        except NotADirectoryError:
            continue  # a file further up: found below
        except OSError as e:
            if e.errno == errno.ELOOP:
                refuse(f"symbolic link loop ({e.strerror}: {p})")
            refuse(f"cannot use {p}: {e.strerror}")
        if not stat.S_ISDIR(st.st_mode):
            refuse("exists and is not a folder" if i == 0 else f"{p} is not a folder")
        existing = p
        break
    if existing is None:
        refuse("no existing folder above it")
    need = report.estimated_report_bytes(0)
    probe = existing / f"{report.STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as e:
        full = e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
        refuse(
            f"cannot write in {existing}: {e.strerror}"
            + (f" (no free space; the reports need {need} bytes)" if full else "")
        )
    try:
        free = shutil.disk_usage(existing).free
    except OSError as e:
        refuse(f"cannot use {existing}: {e.strerror}")
    if free < need:
        refuse(f"{free} bytes free on the filesystem of {existing}; the reports need at least {need}")
    lock = report.OutLock(out)
    try:
        lock.acquire()
    except report.OutLocked as e:
        raise UsageError(
            f"--out {args.out} is in use by another normconf run (pid {e.pid or 'unknown'}); "
            "wait for it to end or choose another --out"
        ) from None
    except OSError as e:
        refuse(f"cannot write in {existing}: {e.strerror}")
    if lock.warning:
        print(f"warning: {lock.warning}", file=sys.stderr)
    args.out_lock = lock  # released once the reports are written (or when args is freed)


def _load_cases(paths: list[str], max_elements: int, known=None):
    """Every case under ``paths``; every problem of every file, and (``known``: the registry's backend
    ids) every ``expect:`` naming an unknown backend, raised together in one round (CaseFileError)."""
    from normconf.cases import load_paths

    return load_paths(paths, max_elements=max_elements, known_backends=known)


class _DeferSignals:
    """Hold SIGINT/SIGTERM while the report files are written, so that they are written together."""

    def __enter__(self):
        import signal
        import threading

        self.pending: list[int] = []
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, lambda signum, frame: self.pending.append(signum))
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.pending and exc[0] is None:
            raise Interrupted(self.pending[0])
        return False


def cmd_run(args: argparse.Namespace) -> int:
    from normconf.cli_progress import progress_factory, timed_runner_class
    from normconf.report import prepare as prepare_reports
    from normconf.report import write_reports
    from normconf.results import to_frame

    _check_run_args(args)
    from normconf.package_data import shipped_cases_dir  # no path: the case library that ships with normconf

    try:  # the registry first: the expect: keys are checked with everything else, in one round
        runner = timed_runner_class()(
            tuple(args.adapter or ()), tuple(args.native or ()), timeout=args.timeout, conventions=args.conventions
        )
    except ValueError as e:  # --conventions
        raise UsageError(str(e)) from None
    with runner:
        # a typo in expect: is a mistake even in a case not selected
        cases = _load_cases(args.paths or [str(shipped_cases_dir())], args.max_elements, runner.adapters)
        cases = select_cases(cases, _csv_list(args.case))
        backends = _select_backends(runner, _csv_list(args.backend))
        #: the backends the user named (not through a glob): each must run at least one case
        must_test = sorted(
            set(named_backends(_csv_list(args.backend), backends)) | (set(runner.user_backends) & set(backends))
        )
        total = len(cases) * len(backends)
        prog, update = progress_factory(total, quiet=args.quiet)
        if prog:
            prog.start()
        preparing: list = []  # threads importing the report modules, started once the run's last work has begun
        try:
            summary = runner.run(
                cases, backends, jobs=args.jobs, progress=update, on_tail=lambda: preparing.append(prepare_reports())
            )
        finally:
            if prog:
                prog.stop()
    for th in preparing:
        th.join(60)
    signum = _LAST_SIGNAL[0] or 2  # SIGINT unless the handler saw SIGTERM
    df = to_frame(summary.rows)
    meta = {
        "environment": environment(summary.versions),
        "command": "normconf " + " ".join(sys.argv[1:])
        if sys.argv and sys.argv[0].endswith("normconf")
        else "normconf run",
        "cases": len(cases),
        "backends": backends,
        "partial": summary.partial,
        "timing": {
            "wall_seconds": round(summary.seconds, 3),
            "harness_cpu_seconds": round(time.process_time(), 3),
            "worker_cpu_seconds": summary.worker_cpu,
            "backend_cpu_seconds": summary.backend_cpu,
        },
    }
    from normconf.report.plots import plot_key

    meta["plot_data"] = {plot_key(r.case, r.backend, r.output, r.step): r.plot for r in summary.rows if r.plot}
    from normconf.case_info import case_info

    meta["case_info"] = {lc.id: case_info(lc.case) for lc in cases}
    out = Path(args.out)
    from normconf.report import OutLocked, ReportWriteError, clear_reports

    lock = getattr(args, "out_lock", None)
    target = out / PARTIAL_DIR if summary.partial else out
    written: list[Path] = []
    write_error = ""
    try:
        with _DeferSignals():
            if summary.partial:
                # the previous complete report in --out stays as it was; what finished goes to partial/
                meta["interrupted_by"] = _signal_label(signum)
                meta["completed_pairs"] = len({(r.case, r.backend) for r in summary.rows})
                meta["total_pairs"] = total
            try:
                if lock is not None:
                    lock.enter_folder()  # creates --out if needed and holds the lock inside it
                written = write_reports(df, meta, target)  # one set, swapped in (normconf.report)
            except ReportWriteError as e:
                write_error = e.message
            except OutLocked as e:  # only if another run took the folder we created (see OutLock)
                write_error = (
                    f"could not write the reports to {target}: another normconf run (pid "
                    f"{e.pid or 'unknown'}) holds its lock; the previous reports are unchanged"
                )
            except OSError as e:  # creating --out or taking its lock
                write_error = (
                    f"could not write the reports to {target}: {e.strerror or e}; the previous reports are unchanged"
                )
            if not write_error and not summary.partial:
                try:  # an older interrupted run's set; a user's own files in partial/ stay
                    if (out / PARTIAL_DIR).is_dir():
                        clear_reports(out / PARTIAL_DIR)
                except OSError as e:
                    print(
                        f"warning: could not remove the stale {out / PARTIAL_DIR}: {e.strerror or e}", file=sys.stderr
                    )
    finally:
        if lock is not None:
            lock.release()
    human = sys.stderr if args.json else sys.stdout  # --json: stdout holds the JSON only
    if len(df) or not summary.partial:
        verbosity = -1 if args.quiet else (1 if args.verbose else 0)
        print_summary(df, human, allow_unavailable=args.allow_unavailable, must_test=must_test, verbosity=verbosity)
    code = _run_code(df, summary.partial, signum, write_error, args.allow_unavailable, must_test)
    if args.json:
        print_json(
            run_json(df, code, written, summary.partial, summary.seconds, must_test=must_test, error=write_error)
        )
    if write_error:
        print(f"error: {write_error}", file=sys.stderr)
        return code
    if summary.partial:
        kept = (
            f"the complete report in {out} is unchanged"
            if (out / "results.json").exists()
            else f"no complete report in {out}"
        )
        print(
            f"wrote {', '.join(str(p) for p in written)} (PARTIAL: interrupted after "
            f"{meta['completed_pairs']} of {total} case × backend pairs; {kept})",
            file=human,
        )
        return code
    if not args.quiet:
        print(f"wrote {', '.join(str(p) for p in written)}", file=human)
    return code


def _run_code(df, partial: bool, signum: int, write_error: str, allow_unavailable: bool, must_test) -> int:
    """The exit code of a finished or interrupted run (see the module docstring)."""
    if partial:
        return 128 + signum  # an interrupted run keeps its signal's status, written or not
    if write_error:
        return EXIT_WRITE
    return run_exit_code(df, allow_unavailable=allow_unavailable, must_test=must_test)


def _signal_label(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


#: the last SIGINT/SIGTERM received (set by the handler installed in :func:`main`)
_LAST_SIGNAL: list[int] = [0]


def _install_signal_handlers() -> dict:
    """SIGTERM behaves like Ctrl-C: KeyboardInterrupt in the main thread (runs stop, reports are kept).

    Returns the previous handlers (restored when :func:`main` returns).
    """
    import signal

    def handler(signum, frame):
        _LAST_SIGNAL[0] = signum
        raise Interrupted(signum)

    saved = {}
    _LAST_SIGNAL[0] = 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return saved


# --------------------------------------------------------------------------------------
# other commands


def cmd_validate(args: argparse.Namespace) -> int:
    from normconf.adapters import AdapterSpecError, all_adapters

    if args.max_elements < 1:
        raise UsageError(f"--max-elements must be at least 1 (got {args.max_elements})")
    known = None  # the registry first: the expect: keys are checked with everything else, in one round
    try:
        known = all_adapters(tuple(args.adapter or ()), tuple(args.native or ()))
    except AdapterSpecError:
        raise
    except Exception as e:  # a broken adapter module must not hide the result of validating the cases
        print(
            f"warning: the backend registry did not load ({type(e).__name__}: {e}); "
            "backends named in expect: were not checked",
            file=sys.stderr,
        )
    cases = _load_cases(args.paths, args.max_elements, known)
    files = sorted({lc.file for lc in cases})
    if args.json:
        print_json({"command": "validate", "valid": True, "cases": len(cases), "files": [str(f) for f in files]})
    else:
        print(f"{len(cases)} case(s) in {len(files)} file(s): valid")
    return EXIT_OK


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adapter",
        action="append",
        metavar="MODULE:NAME",
        help="load an adapter class (or list of classes) from a module (importable, or in the current "
        "folder) or a file (path/to/file.py:Name); repeatable",
    )
    p.add_argument(
        "--native",
        action="append",
        metavar="LIB.so",
        help="run a native library built against native/include/normconf.h (ABI v2, any op) or normconf_bn.h (v1, BatchNorm); repeatable",
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="per (case, backend) timeout in seconds (default 300)"
    )


def build_parser() -> argparse.ArgumentParser:
    from normconf.cases import DEFAULT_MAX_ELEMENTS

    parser = argparse.ArgumentParser(
        prog="normconf", description="Cross-framework conformance harness for normalization layers."
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run cases on backends and write reports")
    p.add_argument("paths", nargs="*", help="case files or folders (default: cases/)")
    p.add_argument(
        "--backend",
        "-b",
        action="append",
        metavar="PAT[,PAT...]",
        help="backends to run: ids, globs (ort*), !negations ('!ort-opset9*'); repeatable (default: all)",
    )
    p.add_argument(
        "--case",
        "-k",
        action="append",
        metavar="PAT[,PAT...]",
        help="only cases whose id matches: globs (ln_*), !negations ('!ln_empty*'); repeatable",
    )
    p.add_argument("--out", "-o", default="reports", help="output folder (default: reports/)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument(
        "--max-elements",
        type=int,
        default=DEFAULT_MAX_ELEMENTS,
        help=f"largest case size in input elements, shape × steps (default {DEFAULT_MAX_ELEMENTS})",
    )
    p.add_argument(
        "--conventions",
        metavar="BACKEND|KNOB=VALUE,...",
        help="the conventions the --native/--adapter backends follow: a built-in backend's id (borrow "
        "its profile, e.g. torch) or knob=value pairs (e.g. running_variance=unbiased); the "
        "expected outcomes are derived from them (docs/profiles.md)",
    )
    p.add_argument(
        "--allow-unavailable",
        action="store_true",
        help="skip requested backends that are not available instead of failing the run (exit 4)",
    )
    _add_common(p)
    add_output_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("backends", help="list backends with availability and version (imports no framework)")
    p.add_argument("--backend", "-b", action="append", metavar="PAT[,PAT...]", help="as for run")
    p.add_argument("--probe", action="store_true", help="start each backend's worker: import its framework and ask it")
    _add_common(p)
    add_output_options(p, "the backends as JSON on stdout")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("validate", help="check case files only")
    p.add_argument("paths", nargs="+")
    p.add_argument("--max-elements", type=int, default=DEFAULT_MAX_ELEMENTS)
    p.add_argument(
        "--adapter",
        action="append",
        metavar="MODULE:NAME",
        help="also accept expectations for this adapter's backends; repeatable",
    )
    p.add_argument("--native", action="append", metavar="LIB.so", help="as for run; repeatable")
    add_output_options(p, "the result as JSON on stdout")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="write the JSON Schema of the case format")
    p.add_argument("--out", default="cases/schema.json", help="file to write, or - for stdout")
    p.set_defaults(func=cmd_schema)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands defined in other modules (each module: ``add_parser(subparsers)``)."""
    import importlib

    out = []
    for mod in ("normconf.report.cli", "normconf.fuzz", "normconf.expect_accept", "normconf.init_cmd"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        out.append(m.add_parser)
    return out


EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: list[str] | None = None) -> int:
    from normconf.adapters import AdapterSpecError
    from normconf.cases import CaseFileError

    EXTRA_COMMANDS[:] = _extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    saved_handlers = _install_signal_handlers()
    try:
        return args.func(args)
    except CaseFileError as e:
        for err in e.errors:
            print(f"error: {err}", file=sys.stderr)
        n = len(e.errors)
        print(f"{n} error{'s' if n != 1 else ''}; nothing was run", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, AdapterSpecError) as e:
        from normconf.cases import escape_text

        text = "\n".join(escape_text(line) for line in str(e).split("\n"))  # user text (paths, patterns) never raw
        print(f"error: {text}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", 2)
        print(f"interrupted ({_signal_label(signum)})", file=sys.stderr)
        return 128 + signum
    finally:
        import signal

        lock = getattr(args, "out_lock", None)
        if lock is not None:  # a usage error after --out was locked: free it now, not when args is collected
            lock.release()
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
