"""The clip manifest: JSON lines, one clip each (the contract every stage reads).

Required keys: ``video`` (path, relative to the manifest's folder or absolute), ``label`` (the
dataset's own spelling), ``dataset`` and ``split``. SynthAct clips add ``fps``, ``num_frames``,
``duration_s`` and ``phases``: a list of ``{name, start_s, end_s, sub_actions}`` in temporal order.
Anything else (``library_key``, ``seed``, ``pose``...) is carried along untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reasonact.paths import read_jsonl, write_jsonl

REQUIRED = ("video", "label", "dataset", "split")


class ManifestError(ValueError):
    """A manifest line is malformed; the message names the file and the line."""


def validate_record(rec: dict, where: str = "record") -> dict:
    """Check one manifest record; raise ManifestError naming ``where`` and the field."""
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for key in REQUIRED:
        if not isinstance(rec.get(key), str) or not rec[key]:
            raise ManifestError(f"{where}: field '{key}' is missing or not a non-empty string")
    phases = rec.get("phases")
    if phases is not None:
        if not isinstance(phases, list) or not phases:
            raise ManifestError(f"{where}: field 'phases' must be a non-empty list")
        prev_end = 0.0
        for i, ph in enumerate(phases):
            w = f"{where}: phases[{i}]"
            if not isinstance(ph, dict) or not isinstance(ph.get("name"), str):
                raise ManifestError(f"{w}: needs a string 'name'")
            try:
                start, end = float(ph["start_s"]), float(ph["end_s"])
            except (KeyError, TypeError, ValueError):
                raise ManifestError(f"{w} ({ph.get('name')}): 'start_s'/'end_s' must be numbers") from None
            if not (0 <= start < end) or start < prev_end - 1e-6:
                raise ManifestError(
                    f"{w} ({ph['name']}): window [{start}, {end}] is empty, negative or overlaps the previous phase"
                )
            prev_end = end
            subs = ph.get("sub_actions", [])
            if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
                raise ManifestError(f"{w} ({ph['name']}): 'sub_actions' must be a list of strings")
        if "duration_s" in rec and prev_end > float(rec["duration_s"]) + 1e-3:
            raise ManifestError(
                f"{where}: last phase ends at {prev_end}s after the clip's duration {rec['duration_s']}s"
            )
    return rec


def read_manifest(path: str | Path, resolve_paths: bool = True) -> list[dict]:
    """Read and validate a manifest. Relative ``video`` paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        records = read_jsonl(path, "manifest", check=validate_record)
    except ValueError as e:  # a line that is not JSON
        raise ManifestError(str(e)) from None
    for rec in records:
        if resolve_paths and not Path(rec["video"]).is_absolute():
            rec["video"] = str(path.parent / rec["video"])
    return records


def write_manifest(records: Iterable[dict], path: str | Path) -> Path:
    """Validate and write records as JSON lines (atomically)."""
    records = list(records)
    for i, rec in enumerate(records):
        validate_record(rec, f"{path}: record {i}")
    return write_jsonl(records, path)


def spread(records: list[dict], n: int) -> list[dict]:
    """``n`` records taken at even steps through the list (a manifest grouped by class -> every class)."""
    step = max(1, len(records) // max(n, 1))
    return records[::step][:n]
