"""HMDB51, UCF-101 and Kinetics-400 official splits -> clip manifests (the manifest contract, ``data/manifest.py``).

    records, report = build_manifest("hmdb51", root="/data/hmdb51", splits="/data/testTrainMulti_7030_splits",
                                     fold=1, subset="test")
    write_manifest(records, "runs/x/hmdb51_test1.jsonl")

The readers trust nothing: a malformed line, an unknown class, a bad id or label raises SplitError
naming the file and line, because a silently skipped line would shift accuracy numbers. Videos that
are listed but absent are counted in ``report`` (``strict=True`` raises instead): real copies of
these datasets are often incomplete (Kinetics clips vanish from YouTube), so that is not fatal.
Labels keep each dataset's official spelling (data/classes/); ``library_key`` is
``"<dataset>/<label>"``, the key the sub-action library uses.
"""

from __future__ import annotations

import csv
import os
import re
from functools import cache
from pathlib import Path
from typing import NamedTuple

# write_manifest is re-exported: build_manifest + write_manifest is the whole API a caller needs.
from reasonact.data.manifest import validate_record, write_manifest  # noqa: F401

CLASSES_DIR = Path(__file__).resolve().parents[2] / "data" / "classes"
CLASS_FILES = {
    "hmdb51": "hmdb51_classes.txt",
    "ucf101": "ucf101_classInd.txt",
    "kinetics400": "kinetics400_classes.txt",
}
SUBSETS = {"hmdb51": ("train", "test"), "ucf101": ("train", "test"), "kinetics400": ("train", "val")}
# Where a listed clip lives under --root. Placeholders: HMDB51/UCF-101 {label} {video} (file name as
# listed) {stem} {split} {fold}; Kinetics {label} (CSV text) {label_underscore} {youtube_id}
# {time_start} {time_end} {split}. Mirrors that re-encode (.avi -> .mp4) only need another pattern.
DEFAULT_PATTERNS = {
    "hmdb51": "{label}/{video}",
    "ucf101": "{label}/{video}",
    "kinetics400": "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
}
MAX_LISTED = 20  # missing paths shown: enough to spot a wrong root or pattern, short enough to read


class SplitError(ValueError):
    """A split file or argument is invalid; the message names the file and line."""


class MissingVideosError(SplitError, FileNotFoundError):
    """strict=True and some listed videos are not on disk."""


class Entry(NamedTuple):
    """One clip as a split file lists it, before we look for it on disk."""

    file: Path
    line: int
    label: str  # official spelling, as in data/classes/
    fields: dict  # placeholders for the file-name pattern
    extra: dict  # carried into the manifest record

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@cache
def load_classes(dataset: str) -> tuple[str, ...]:
    """The official class names, in official order (UCF-101: index i+1 is classInd's label)."""
    path = CLASSES_DIR / CLASS_FILES[dataset]
    if dataset == "ucf101":
        return tuple(name for _, name in _read_class_ind(path))
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _lines(path: Path):
    """(line number, stripped text) of non-blank lines. strip() also eats the official lists' CRLF
    endings (UCF-101) and trailing spaces (HMDB51)."""
    with path.open(encoding="utf-8-sig") as f:  # -sig: tolerate a BOM from Windows editors
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line.strip()


def _read_class_ind(path: Path) -> list[tuple[int, str]]:
    rows = []
    for lineno, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(rows) + 1:
            raise SplitError(
                f"{path}:{lineno}: expected '<index> <ClassName>' with index {len(rows) + 1}, got {line!r}"
            )
        rows.append((int(parts[0]), parts[1]))
    return rows


def _check_args(dataset: str, fold: int, subset: str) -> None:
    if dataset not in SUBSETS:
        raise SplitError(f"unknown dataset {dataset!r}; expected one of {', '.join(SUBSETS)}")
    if subset not in SUBSETS[dataset]:
        raise SplitError(f"subset {subset!r} is not valid for {dataset}; expected one of {SUBSETS[dataset]}")
    # Kinetics-400 has one official train/val split, so it has no fold to check.
    if dataset != "kinetics400" and (isinstance(fold, bool) or fold not in (1, 2, 3)):
        raise SplitError(f"fold must be 1, 2 or 3 for {dataset} (the official splits), got {fold!r}")


def _split_dir(splits: str | Path, official_name: str) -> Path:
    """Accept the official split folder itself or the folder that contains it."""
    path = Path(splits)
    if (path / official_name).is_dir():
        path = path / official_name
    if not path.is_dir():
        raise SplitError(f"{path}: split folder not found (expected {official_name}/ or its parent)")
    return path


def read_hmdb51(splits: str | Path, fold: int = 1, subset: str = "train") -> list[Entry]:
    """testTrainMulti_7030_splits/<class>_test_split<k>.txt, lines '<video>.avi <id>':
    id 1 = train, 2 = test, 0 = unused in that fold."""
    _check_args("hmdb51", fold, subset)
    folder = _split_dir(splits, "testTrainMulti_7030_splits")
    suffix = f"_test_split{fold}.txt"
    files = sorted(folder.glob(f"*{suffix}"))
    if not files:
        raise SplitError(f"{folder}: no '<class>{suffix}' files (is this HMDB51's split folder?)")
    classes, wanted = set(load_classes("hmdb51")), {"train": "1", "test": "2"}[subset]
    entries = []
    for path in files:
        # Class names contain underscores (sword_exercise), so take everything before the suffix.
        label = path.name[: -len(suffix)]
        if label not in classes:
            raise SplitError(
                f"{path}: unknown HMDB51 class {label!r} (not in {CLASSES_DIR / CLASS_FILES['hmdb51']})"
            )
        for lineno, line in _lines(path):
            parts = line.split()
            if len(parts) != 2:
                raise SplitError(f"{path}:{lineno}: expected '<video>.avi <id>', got {line!r}")
            if parts[1] not in ("0", "1", "2"):
                raise SplitError(
                    f"{path}:{lineno}: id must be 0 (unused), 1 (train) or 2 (test), got {parts[1]!r}"
                )
            if parts[1] == wanted:
                fields = {"label": label, "video": parts[0], "stem": Path(parts[0]).stem}
                entries.append(Entry(path, lineno, label, fields, {}))
    return entries


def read_ucf101(splits: str | Path, fold: int = 1, subset: str = "train") -> list[Entry]:
    """ucfTrainTestlist/{train,test}list0<k>.txt: '<Class>/<video>.avi <1-based label>' (test: no label)."""
    _check_args("ucf101", fold, subset)
    folder = _split_dir(splits, "ucfTrainTestlist")
    index = dict(enumerate(load_classes("ucf101"), 1))
    # The copy shipped with the dataset must agree with ours, or trainlist labels would mean other classes.
    local = folder / "classInd.txt"
    if local.is_file():
        theirs = dict(_read_class_ind(local))
        for i in sorted(set(theirs) | set(index)):
            if theirs.get(i) != index.get(i):
                raise SplitError(
                    f"{local}: class {i} is {theirs.get(i)!r} but the official classInd.txt "
                    f"says {index.get(i)!r}"
                )
    path = folder / f"{subset}list0{fold}.txt"
    if not path.is_file():
        raise SplitError(f"{path}: split file not found")
    entries = []
    for lineno, line in _lines(path):
        where, parts = f"{path}:{lineno}", line.split()
        if len(parts) not in (1, 2) or parts[0].count("/") != 1:
            raise SplitError(f"{where}: expected '<Class>/<video>.avi [<label>]', got {line!r}")
        if subset == "train" and len(parts) != 2:
            raise SplitError(f"{where}: trainlist lines need a 1-based label, got {line!r}")
        label, video = parts[0].split("/")
        if label not in index.values():
            raise SplitError(f"{where}: unknown UCF-101 class {label!r} (not in classInd.txt)")
        # Testlists carry no label (the folder is the label); where a line has one, it must agree.
        if len(parts) == 2:
            if not parts[1].isdigit() or int(parts[1]) not in index:
                raise SplitError(f"{where}: label must be an integer in 1..{len(index)}, got {parts[1]!r}")
            if index[int(parts[1])] != label:
                raise SplitError(
                    f"{where}: label {parts[1]} is {index[int(parts[1])]!r} in classInd.txt "
                    f"but the folder says {label!r}"
                )
        fields = {"label": label, "video": video, "stem": Path(video).stem}
        entries.append(Entry(path, lineno, label, fields, {}))
    return entries


def _norm_label(text: str) -> str:
    """Kinetics mirrors differ in spelling ('passing American football (in game)', 'air_drumming',
    quoted labels): compare without brackets, quotes, underscores and case."""
    return re.sub(r"[\s_]+", " ", re.sub(r"[()\"]", "", text)).strip().lower()


def _seconds(text: str, where: str, column: str) -> int:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = -1.0
    if value < 0 or value != int(value):
        raise SplitError(f"{where}: {column} must be a whole number of seconds, got {text!r}")
    return int(value)


def read_kinetics400(splits: str | Path, subset: str = "train") -> list[Entry]:
    """train.csv / validate.csv (or val.csv): label,youtube_id,time_start,time_end,split[,is_cc]."""
    _check_args("kinetics400", 1, subset)
    path = Path(splits)
    if path.is_dir():
        names = ["train.csv"] if subset == "train" else ["validate.csv", "val.csv"]
        found = [path / n for n in names if (path / n).is_file()]
        if not found:
            raise SplitError(f"{path}: no {' or '.join(names)} found")
        path = found[0]
    elif not path.is_file():
        raise SplitError(f"{path}: Kinetics-400 annotation CSV not found")
    lookup = {_norm_label(c): c for c in load_classes("kinetics400")}
    entries = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        needed = ["label", "youtube_id", "time_start", "time_end", "split"]
        if missing := [c for c in needed if c not in (reader.fieldnames or [])]:
            raise SplitError(f"{path}:1: header must contain {','.join(needed)}; missing {','.join(missing)}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            # DictReader files extra cells under None and fills short rows with None.
            if None in row or None in row.values():
                raise SplitError(f"{where}: expected {len(reader.fieldnames)} columns")
            raw = row["label"].strip()
            if (label := lookup.get(_norm_label(raw))) is None:
                raise SplitError(f"{where}: unknown Kinetics-400 class {raw!r}")
            yid = row["youtube_id"].strip()
            if not yid:
                raise SplitError(f"{where}: empty youtube_id")
            start = _seconds(row["time_start"], where, "time_start")
            end = _seconds(row["time_end"], where, "time_end")
            if end <= start:
                raise SplitError(f"{where}: time_end {end} is not after time_start {start}")
            # {label} is the CSV text as written: download scripts name folders after it.
            extra = {"youtube_id": yid, "time_start": start, "time_end": end}
            fields = {**extra, "label": raw, "label_underscore": raw.replace(" ", "_")}
            entries.append(Entry(path, reader.line_num, label, fields, extra))
    return entries


def _video_path(root: Path, pattern: str, fields: dict, where: str) -> Path:
    try:
        return root / pattern.format(**fields)
    except KeyError as e:
        raise SplitError(
            f"pattern {pattern!r} uses {{{e.args[0]}}}; available: {', '.join('{' + k + '}' for k in fields)}"
        ) from None
    except (ValueError, IndexError, AttributeError) as e:
        raise SplitError(f"pattern {pattern!r} does not fit {where}: {e}") from None


def build_manifest(
    dataset: str,
    root: str | Path,
    splits: str | Path | None = None,
    fold: int = 1,
    subset: str = "train",
    strict: bool = False,
    pattern: str | None = None,
):
    """Records of one official split whose videos exist under ``root``, and a report.

    ``splits``: the split folder (HMDB51, UCF-101: the official folder or its parent) or the CSV /
    its folder (Kinetics-400); defaults to ``root``. ``fold`` (1-3) is ignored for Kinetics-400.
    ``pattern``: where a clip lives relative to ``root`` (DEFAULT_PATTERNS lists the placeholders).
    Returns ``(records, report)``; report counts ``listed``/``found``/``missing`` and gives the first
    MAX_LISTED ``missing_videos``. ``strict=True`` raises MissingVideosError if any is missing.
    """
    _check_args(dataset, fold, subset)
    root = Path(os.path.abspath(Path(root).expanduser()))  # absolute, symlinks left as the user made them
    if not root.is_dir():
        raise SplitError(f"{root}: dataset root not found")
    splits = root if splits is None else Path(splits).expanduser()
    if dataset == "kinetics400":
        entries = read_kinetics400(splits, subset)
    else:
        entries = (read_hmdb51 if dataset == "hmdb51" else read_ucf101)(splits, fold, subset)
    pattern = pattern or DEFAULT_PATTERNS[dataset]
    with_fold = {} if dataset == "kinetics400" else {"fold": fold}

    records, missing = [], []
    for e in entries:
        video = _video_path(root, pattern, {**e.fields, "split": subset, **with_fold}, e.where)
        if not video.is_file():
            missing.append((e.where, str(video)))
            continue
        rec = {
            "video": str(video),
            "label": e.label,
            "dataset": dataset,
            "split": subset,
            **with_fold,
            "library_key": f"{dataset}/{e.label}",
            **e.extra,
        }
        records.append(validate_record(rec, e.where))

    report = {
        "dataset": dataset,
        "split": subset,
        **with_fold,
        "root": str(root),
        "pattern": pattern,
        "split_files": sorted({str(e.file) for e in entries}),
        "listed": len(entries),
        "found": len(records),
        "missing": len(missing),
        "classes": len({r["label"] for r in records}),
        "missing_videos": [video for _, video in missing[:MAX_LISTED]],
    }
    if strict and missing:
        shown = "\n".join(f"  {where}: {video}" for where, video in missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise MissingVideosError(
            f"{dataset} {subset}: {len(missing)} of {len(entries)} listed videos are "
            f"missing under {root} (pattern {pattern!r}):\n{shown}{more}"
        )
    return records, report
