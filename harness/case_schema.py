"""The JSON Schema of a case file (``normconf schema`` writes it to cases/schema.json): the
top-level keys, and per registered op its case model (pydantic's schema), selected by ``op``."""

from __future__ import annotations

from typing import Any

from normconf import ops


def json_schema() -> dict[str, Any]:
    """JSON Schema of a case file (for editors: validation and completion): each case is one of the
    registered ops' models, selected by ``op`` (BatchNorm when absent)."""
    defs: dict[str, Any] = {}
    entries, defaults = [], []
    for spec in ops.all_ops():
        sch = spec.case_model.model_json_schema(ref_template="#/$defs/{model}")
        for k, v in sch.pop("$defs", {}).items():
            defs.setdefault(k, v)
        title = spec.case_model.__name__ if spec.name != "batch_norm" else "Case"
        # in a file, any field but `id` may come from `defaults:`
        entry = dict(sch, required=["id"], title=title)
        entry["properties"] = dict(sch["properties"])
        entry["properties"]["expect"] = {
            "type": "object",
            "title": "Expect",
            "description": "known discrepancies per backend; `backend: null` drops one inherited from defaults",
            "additionalProperties": {"anyOf": [{"$ref": "#/$defs/Expectation"}, {"type": "null"}]},
        }
        defs[title] = entry
        entries.append({"$ref": f"#/$defs/{title}"})
        dflt = dict(sch, required=[], title=f"Defaults ({spec.name})")
        dflt["properties"] = {k: v for k, v in sch["properties"].items() if k != "id"}
        defs[f"Defaults_{spec.name}"] = dflt
        defaults.append({"$ref": f"#/$defs/Defaults_{spec.name}"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "normconf case file",
        "description": "A list of normalization test cases (op: "
        + ", ".join(ops.names())
        + "; batch_norm when absent); 'defaults' is merged into each case.",
        "type": "object",
        "additionalProperties": False,
        "required": ["cases"],
        "properties": {
            "normconf": {
                "const": 1,
                "description": "case-file format version; marks the file as a normconf case file "
                "(the pytest plugin collects only files that carry it)",
            },
            "defaults": {"anyOf": defaults},
            "cases": {"type": "array", "items": {"anyOf": entries}},
        },
        "$defs": defs,
    }
