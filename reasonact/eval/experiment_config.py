"""Experiment tables (``configs/experiments/*.yaml``): their schema, parsed by the recipes' parser
(``config.parse_section``: unknown keys, missing keys and wrong types name the file, the row and the key),
then checked against the rules below.

    spec = load_table("table2")          # or a path; errors name the file and the row

A table has ``rows``; a row has a ``name``, a ``label``, an optional ``group`` (a section of the table),
the ``paper``'s numbers (one per ``paper_columns``) and ``stages``: the chain of stages from the base
model, each a name (``fre``, ``vsft``, ``tgrpo``) or a mapping ``{stage, set, library_fraction,
library_seed}``. ``set`` holds dotted recipe keys of that stage's own section. Table-level ``set``
overrides the recipe for every stage of every row (budget knobs); ``eval.clips_per_class`` evaluates
the first N test clips of each class; ``eval.order_clips_per_class`` adds the order probe (N freshly
rendered clips each of the order-only pair, ordered and shuffled); ``train_seeds`` trains every row once per
seed.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonact.config import CONFIG_DIR, ConfigError, Recipe, parse_section
from reasonact.paths import STAGES
from reasonact.rewards.functions import normalize_weights

TABLE_DIR = CONFIG_DIR / "experiments"
ORDER = tuple(STAGES)  # fre, vsft, tgrpo: the curriculum
FORBIDDEN = {
    "vsft.from_fre": "leave fre out of the row's stages instead (the chain decides which adapters merge)",
    "eval.seeds": "the tables report the paper's 5 evaluation seeds (eval.seeds of the profile)",
}


class ExperimentConfigError(ConfigError):
    """An invalid experiment table; the message names the file and the row."""


@dataclass(frozen=True)
class StageSpec:
    stage: str
    set: tuple = ()  # ((dotted key, value), ...): overrides of this stage's recipe section
    library_fraction: float = 1.0
    library_seed: int = 0


@dataclass
class RowSpec:
    name: str
    label: str
    stages: list[StageSpec]
    group: str | None = None
    paper: list | None = None
    optional: bool = False
    note: str | None = None
    compare: str | None = None  # another row: this row minus that one, paired (the effect of what differs)


@dataclass
class TableSpec:
    name: str
    path: Path
    rows: list[RowSpec]
    title: str = ""
    description: str = ""
    set: dict = field(default_factory=dict)
    clips_per_class: int | None = None
    baseline: str | None = None
    paper_columns: list = field(default_factory=list)
    train_seeds: list | None = None
    order_clips: int | None = None  # sit and stand clips each in the order probe (None: no probe)

    def row(self, name: str) -> RowSpec:
        for r in self.rows:
            if r.name == name:
                return r
        raise ExperimentConfigError(
            f"{self.path}: no row '{name}' (rows: {', '.join(r.name for r in self.rows)})"
        )

    def select(self, names=None) -> list[RowSpec]:
        """The named rows (in the table's order), or every row that is not optional."""
        if not names:
            return [r for r in self.rows if not r.optional]
        wanted = [self.row(n).name for n in names]
        return [r for r in self.rows if r.name in wanted]


# ---- parsing: the YAML's shape (checked by config.parse_section, like a recipe), then the rules -----------


@dataclass
class StageEntry:
    stage: str
    set: dict[str, Any] = field(default_factory=dict)
    library_fraction: float = 1.0
    library_seed: int = 0


@dataclass
class RowEntry:
    name: str
    stages: list  # stage names or StageEntry mappings
    label: str | None = None
    group: str | None = None
    paper: list[float] | None = None
    optional: bool = False
    note: str | None = None
    compare: str | None = None


@dataclass
class EvalEntry:
    clips_per_class: int | None = None
    order_clips_per_class: int | None = None


@dataclass
class TableFile:
    rows: list  # RowEntry mappings, parsed one by one (errors name the row)
    title: str = ""
    description: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    eval: EvalEntry = field(default_factory=EvalEntry)
    baseline: str | None = None
    paper_columns: list[str] = field(default_factory=list)
    train_seeds: list[int] | None = None


def _check_key(dotted: str, where: str) -> None:
    """``dotted`` must name a recipe value; inside a mapping field (reward weights) any entry is allowed,
    but a reward weight must name a reward component."""
    obj, parts = Recipe(), dotted.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise ExperimentConfigError(
                f"{where}: unknown recipe key '{dotted}' ('{part}' is not a field there)"
            )
        obj = getattr(obj, part)
        if isinstance(obj, dict):
            if parts[: i + 1] == ["tgrpo", "weights"] and len(parts) == i + 2:
                try:
                    normalize_weights({parts[-1]: 0.0})
                except KeyError as e:
                    raise ExperimentConfigError(f"{where}: '{dotted}': {e.args[0]}") from None
            return
    if dataclasses.is_dataclass(obj):
        raise ExperimentConfigError(f"{where}: '{dotted}' names a section, not a value")


def _overrides(value, where: str, section: str | None = None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ExperimentConfigError(f"{where}: 'set' must be a mapping of dotted recipe keys to values")
    for k in value:
        if k in FORBIDDEN:
            raise ExperimentConfigError(f"{where}: '{k}' may not be set here: {FORBIDDEN[k]}")
        if section and k.split(".")[0] != section:
            raise ExperimentConfigError(
                f"{where}: '{k}' is not in the {section} section (a stage sets its own keys)"
            )
        _check_key(k, where)
    return dict(value)


def _parse(cls, data, where: str):
    try:
        return parse_section(cls, data, where)
    except ExperimentConfigError:
        raise
    except ConfigError as e:  # the same message, as the tables' own error type
        raise ExperimentConfigError(str(e)) from None


def _stage(item, where: str) -> StageSpec:
    e = _parse(StageEntry, {"stage": item} if isinstance(item, str) else item, where)
    if e.stage not in ORDER:
        raise ExperimentConfigError(f"{where}: unknown stage '{e.stage}' (stages: {', '.join(ORDER)})")
    if ("library_fraction" in item or "library_seed" in item) and e.stage != "tgrpo":
        raise ExperimentConfigError(f"{where}: library_fraction applies to the T-GRPO reward only")
    if not 0 < e.library_fraction <= 1:
        raise ExperimentConfigError(
            f"{where}: library_fraction must be in (0, 1], got {e.library_fraction!r}"
        )
    sets = _overrides(e.set, f"{where}, stage {e.stage}", section=e.stage)
    return StageSpec(e.stage, tuple(sorted(sets.items())), e.library_fraction, e.library_seed)


def _row(item, i: int, path: Path) -> RowSpec:
    name = item.get("name") if isinstance(item, dict) else None
    where = f"{path}: row '{name}' (#{i + 1})" if name else f"{path}: row #{i + 1}"
    e = _parse(RowEntry, item, where)
    stages = [_stage(s, where) for s in e.stages]
    names = [s.stage for s in stages]
    if names != sorted(names, key=ORDER.index) or len(set(names)) != len(names):
        raise ExperimentConfigError(
            f"{where}: stages {names} must be in curriculum order ({', '.join(ORDER)}), each once"
        )
    return RowSpec(e.name, e.label or e.name, stages, e.group, e.paper, e.optional, e.note, e.compare)


def load_table(name_or_path: str | Path) -> TableSpec:
    """``table1`` / ``table2`` (``configs/experiments/<name>.yaml``) or a YAML path, parsed and checked."""
    p = Path(name_or_path)
    path = p if p.suffix in (".yaml", ".yml") else TABLE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(x.stem for x in TABLE_DIR.glob("*.yaml")))
        raise ExperimentConfigError(f"{path}: experiment table not found (known: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ExperimentConfigError(f"{path}: not valid YAML ({e})") from None
    t = _parse(TableFile, data, str(path))
    if not t.rows:
        raise ExperimentConfigError(f"{path}: 'rows' must be a non-empty list")
    rows = [_row(item, i, path) for i, item in enumerate(t.rows)]
    seen = set()
    for i, r in enumerate(rows):
        if r.name in seen:
            raise ExperimentConfigError(f"{path}: row '{r.name}' (#{i + 1}): the name is used twice")
        seen.add(r.name)
    n = t.eval.clips_per_class
    if n is not None and n < 1:
        raise ExperimentConfigError(
            f"{path}: eval.clips_per_class must be a positive integer or null, got {n!r}"
        )
    m = t.eval.order_clips_per_class
    if m is not None and m < 1:
        raise ExperimentConfigError(
            f"{path}: eval.order_clips_per_class must be a positive integer or null, got {m!r}"
        )
    if t.train_seeds is not None and not t.train_seeds:
        raise ExperimentConfigError(f"{path}: train_seeds must be a non-empty list of integers or null")
    spec = TableSpec(
        path.stem,
        path,
        rows,
        t.title,
        " ".join(str(t.description).split()),
        _overrides(t.set, f"{path}: set"),
        n,
        t.baseline or rows[0].name,
        list(t.paper_columns),
        t.train_seeds,
        m,
    )
    spec.row(spec.baseline)  # must exist
    for i, r in enumerate(rows):
        if r.compare is not None and (r.compare == r.name or r.compare not in seen):
            raise ExperimentConfigError(
                f"{path}: row '{r.name}' (#{i + 1}): compare must name another row, got {r.compare!r}"
            )
    return spec


def expand_overrides(recipe: Recipe, overrides: dict) -> dict:
    """Dotted keys that reach inside a mapping field (``tgrpo.weights.format``) become the whole mapping
    with that entry changed, so the other entries keep the recipe's values."""
    out, merged = {}, {}
    for k, v in overrides.items():
        parts, obj = k.split("."), recipe
        for i, part in enumerate(parts[:-1]):
            obj = getattr(obj, part, None)
            if isinstance(obj, dict):
                prefix = ".".join(parts[: i + 1])
                target = merged.setdefault(prefix, copy.deepcopy(obj))
                node = target
                for q in parts[i + 1 : -1]:
                    node = node.setdefault(q, {})
                node[parts[-1]] = v
                break
        else:
            out[k] = v
    return {**out, **merged}
