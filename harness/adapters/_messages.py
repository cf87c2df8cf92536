"""A framework's exception as one short, reproducible line for a result's ``message``."""

from __future__ import annotations

import re

#: "... with these attrs: [a=1, b=2]": TensorFlow lists an op's attributes in hash order, which changes
#: from run to run (and so would the message, in results that must be identical between runs)
_ATTRS = re.compile(r"(with these attrs: \[)([^\[\]]*)(\])")


def first_lines(msg: object, n: int = 3, strip: bool = False) -> str:
    """The first ``n`` non-empty lines of ``msg`` joined by spaces (``strip``: each line stripped), at
    most 600 characters, with TensorFlow's attribute lists in sorted order."""
    lines = [ln.strip() if strip else ln for ln in str(msg).strip().splitlines() if ln.strip()]
    text = _ATTRS.sub(
        lambda m: m.group(1) + ", ".join(sorted(m.group(2).split(", "))) + m.group(3), " ".join(lines[:n])
    )
    return text[:600]
