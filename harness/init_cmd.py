"""``normconf init [PATH]``: write a starter case file (one BatchNorm, one LayerNorm case, comments).

The file carries ``normconf: 1`` and a ``# yaml-language-server: $schema=...`` modeline pointing at
the case format's JSON Schema (this checkout's ``cases/schema.json`` when it has one: relative
inside the checkout, a file:// URI outside; else a ``schema.json`` written next to the new file), so editors complete and check
it.  An existing file is never overwritten (exit 2).  The file validates (``normconf validate``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

#: the file ``normconf init`` writes when no PATH is given
DEFAULT_PATH = "cases/my_cases.yaml"

STARTER = """\
# yaml-language-server: $schema={schema}
# Starter normconf cases: edit, then `normconf validate {name}` and `normconf run {name}`.
# Format: docs/cases.md.  Every key below is optional unless marked; `defaults:` apply to every case.
normconf: 1
defaults:
  input: {{dist: normal, mean: 0.5, std: 2.0, seed: 1}}  # deterministic inputs

cases:
  # BatchNorm (the default op): statistics per channel, axis 1 with layout channels_first.
  - id: my_bn_train            # required; unique across every case file of a run
    description: A small NCHW batch in training mode (batch statistics, running stats updated).
    shape: [4, 3, 5, 5]        # (N, C, H, W)
    mode: train                # train | eval
    eps: 1.0e-5
    momentum: {{batch_weight: 0.1}}  # PyTorch's momentum 0.1: running = 0.9·old + 0.1·batch
    dtype: float32

  # LayerNorm: statistics per row over `axes` (default: the last one).
  - id: my_ln_last_axis
    op: layer_norm
    description: A batch of 8 feature vectors of 16, normalized over the features.
    shape: [8, 16]
    axes: [-1]
    eps: 1.0e-5
"""


def _schema_ref(target: Path) -> str:
    """Where the modeline points: the schema that ships with the case library (a checkout's
    cases/schema.json, an installed wheel's case_library/schema.json), relative to the new file when
    both lie in one tree, else its file URI; ``schema.json`` next to the new file (written now if
    missing) only when no shipped schema is found (a broken install)."""
    from normconf.package_data import shipped_schema

    folder = target.parent.resolve()
    try:
        bundled = shipped_schema()
    except FileNotFoundError:
        bundled = None
    if bundled is not None and bundled.is_file():
        home = bundled.parent.parent  # the checkout (cases/ is in it) or the installed package's folder
        if folder.is_relative_to(home):
            return Path(os.path.relpath(bundled, folder)).as_posix()
        return bundled.as_uri()
    local = folder / "schema.json"
    if not local.exists():
        import json

        from normconf.cases import json_schema
        from normconf.results import atomic_write_text

        atomic_write_text(local, json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return "schema.json"


def cmd_init(args: argparse.Namespace) -> int:
    from normconf.cli_common import UsageError
    from normconf.results import atomic_write_text

    target = Path(args.path)
    if target.suffix.lower() not in (".yaml", ".yml"):
        raise UsageError(f"{args.path}: a case file must end in .yaml or .yml")
    if target.exists() or target.is_symlink():
        raise UsageError(f"{args.path} exists; normconf init never overwrites a file (choose another PATH)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        text = STARTER.format(schema=_schema_ref(target), name=args.path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # never replaces a file
        os.close(fd)
        try:
            atomic_write_text(target, text)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    except FileExistsError:
        raise UsageError(f"{args.path} exists; normconf init never overwrites a file (choose another PATH)") from None
    except OSError as e:
        raise UsageError(f"{args.path}: cannot write: {e.strerror or e}") from None
    print(f"wrote {target} (2 cases); next: normconf validate {target}", file=sys.stdout)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a starter case file (one BatchNorm, one LayerNorm case)",
        description="Write a commented starter case file that validates; an existing file is never overwritten "
        "(exit 2).",
    )
    p.add_argument("path", nargs="?", default=DEFAULT_PATH, help=f"file to write (default: {DEFAULT_PATH})")
    p.set_defaults(func=cmd_init)
