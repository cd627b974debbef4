"""The sub-action library: action -> ordered phases -> sub-actions -> phrasings.

Data lives in ``data/library/*.yaml`` (one file per dataset; a dataset may span several files),
keyed by each dataset's own label spelling::

    dataset: hmdb51
    actions:
      jump:
        description: ...
        aliases: [jumping]
        phases:
          - name: crouch
            share: 0.3
            sub_actions:
              knee_flexion: [bends the knees, sinks down into a crouch]

An action's key is ``"<dataset>/<label>"``. Sub-action names are canonical and shared across
actions when the movement is the same; phrasings are kept per action (how *this* action's knee
flexion is described) and their union per name gives the library's vocabulary. SynthAct's classes
are HMDB51 classes and resolve to the ``hmdb51`` entries.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from reasonact.config import REPO_ROOT

LIBRARY_DIR = REPO_ROOT / "data" / "library"
CLASSES_DIR = REPO_ROOT / "data" / "classes"
DATASETS = ("hmdb51", "ucf101", "kinetics400")
DATASET_ALIASES = {"synthact": "hmdb51"}  # SynthAct renders HMDB51 classes
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class LibraryError(ValueError):
    """Invalid library entries: ``errors`` lists every problem, each naming the file, the action, the phase
    and the field; the message is the count and the list."""

    def __init__(self, errors: str | list[str]):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        head = "" if len(self.errors) == 1 else f"{len(self.errors)} problems in the sub-action library:\n"
        super().__init__(head + "\n".join(self.errors))


@dataclass(frozen=True)
class SubAction:
    name: str
    phrasings: tuple[str, ...]


@dataclass(frozen=True)
class Phase:
    name: str
    share: float
    sub_actions: tuple[SubAction, ...]


@dataclass(frozen=True)
class Action:
    dataset: str
    label: str
    description: str
    aliases: tuple[str, ...]
    phases: tuple[Phase, ...]
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.label}"

    @property
    def sub_actions(self) -> list[SubAction]:
        """All sub-actions in temporal order (phase by phase)."""
        return [s for p in self.phases for s in p.sub_actions]

    def phase_of(self, sub_action: str) -> str | None:
        return next((p.name for p in self.phases for s in p.sub_actions if s.name == sub_action), None)

    def phase_windows(self, duration: float = 1.0) -> list[tuple[str, float, float]]:
        """Typical phase windows from the shares (the fallback when a dataset has no annotations)."""
        out, t = [], 0.0
        total = sum(p.share for p in self.phases) or 1.0
        for p in self.phases:
            d = duration * p.share / total
            out.append((p.name, t, t + d))
            t += d
        return out


def normalize_label(text: str) -> str:
    """Spelling-insensitive form: ``BaseballPitch``, ``baseball_pitch``, ``Baseball pitch`` -> ``baseball pitch``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", str(text))
    text = re.sub(r"[()\[\]\"'`]", "", text.lower())
    return " ".join(re.sub(r"[_\-/]+", " ", text).split())


@dataclass
class Library:
    actions: dict[str, Action] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def __iter__(self):
        return iter(self.actions.values())

    def __getitem__(self, key: str) -> Action:
        return self.actions[key]

    def datasets(self) -> list[str]:
        return sorted({a.dataset for a in self})

    def resolve(self, label: str, dataset: str | None = None) -> Action:
        """Find the entry for a label in any spelling (and any alias); ``dataset`` narrows the search."""
        dataset = DATASET_ALIASES.get(dataset, dataset) if dataset else None
        if dataset and f"{dataset}/{label}" in self.actions:
            return self.actions[f"{dataset}/{label}"]
        if "/" in str(label) and label in self.actions:
            return self.actions[label]
        norm = normalize_label(label)
        hits = [
            a
            for a in self
            if (dataset is None or a.dataset == dataset)
            and (normalize_label(a.label) == norm or norm in map(normalize_label, a.aliases))
        ]
        exact = [a for a in hits if normalize_label(a.label) == norm]
        hits = exact or hits
        if len(hits) == 1 or (
            hits and dataset is None and len({a.label for a in hits}) == 1 and len(exact) >= 1
        ):
            return hits[0]
        where = f" in {dataset}" if dataset else ""
        if not hits:
            raise KeyError(f"no library entry for label {label!r}{where}")
        raise KeyError(f"label {label!r} is ambiguous{where}: {', '.join(a.key for a in hits)}")

    def vocabulary(self) -> dict[str, set[str]]:
        """Canonical sub-action name -> keys of the actions that use it."""
        out: dict[str, set[str]] = defaultdict(set)
        for a in self:
            for s in a.sub_actions:
                out[s.name].add(a.key)
        return dict(out)

    def content_hash(self) -> str:
        blob = json.dumps(
            [
                [a.key, [[p.name, p.share, [[s.name, s.phrasings] for s in p.sub_actions]] for p in a.phases]]
                for a in self
            ],
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def subset(self, fraction: float, seed: int = 0) -> Library:
        """Keep ``fraction`` of the canonical sub-actions (seeded) for the library-size ablation.

        Every action keeps at least one sub-action (its first surviving one or, if none survives,
        one drawn with the same seed); phases left empty are dropped and the shares renormalised.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        names = sorted(self.vocabulary())
        rng = random.Random(seed)
        keep = set(rng.sample(names, max(1, round(fraction * len(names)))))
        out = {}
        for key, a in self.actions.items():
            kept_names = {s.name for s in a.sub_actions if s.name in keep} or {rng.choice(a.sub_actions).name}
            phases = [
                replace(p, sub_actions=tuple(s for s in p.sub_actions if s.name in kept_names))
                for p in a.phases
            ]
            phases = [p for p in phases if p.sub_actions]
            total = sum(p.share for p in phases)
            out[key] = replace(a, phases=tuple(replace(p, share=p.share / total) for p in phases))
        return Library(out)

    def stats(self) -> dict:
        vocab = self.vocabulary()
        per_ds: dict[str, set[str]] = defaultdict(set)
        for a in self:
            for s in a.sub_actions:
                per_ds[a.dataset].add(s.name)
        ds_count = defaultdict(int)
        for name in vocab:
            ds_count[sum(name in v for v in per_ds.values())] += 1
        phases = [len(a.phases) for a in self]
        subs = [len(p.sub_actions) for a in self for p in a.phases]
        return {
            "actions": len(self),
            "actions_per_dataset": {d: sum(a.dataset == d for a in self) for d in self.datasets()},
            "unique_sub_actions": len(vocab),
            "sub_action_uses": sum(len(v) for v in vocab.values()),
            "shared_across_actions": sum(len(v) > 1 for v in vocab.values()),
            "shared_across_datasets": sum(
                n > 1 for n in [sum(name in v for v in per_ds.values()) for name in vocab]
            ),
            "sub_actions_by_number_of_datasets": dict(sorted(ds_count.items())),
            "unique_sub_actions_per_dataset": {d: len(v) for d, v in sorted(per_ds.items())},
            "phrasings": sum(len(s.phrasings) for a in self for s in a.sub_actions),
            "phases_per_action": _hist(phases),
            "sub_actions_per_phase": _hist(subs),
        }


def _hist(values: list[int]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(sorted(out.items()))


def _parse_action(dataset: str, label: str, raw, path: Path, errors: list[str]) -> Action | None:
    """The entry as an Action, or None; every problem found is appended to ``errors`` (file, action,
    phase and field named), so one run of the validator reports them all."""
    where = f"{path}: action '{label}'"
    n_before = len(errors)

    def err(msg: str) -> None:
        errors.append(f"{where}: {msg}")

    if not isinstance(raw, dict):
        err("must be a mapping with description, aliases, phases")
        return None
    if unknown := set(raw) - {"description", "aliases", "phases"}:
        err(f"unknown field(s) {sorted(unknown)}")
    if not isinstance(raw.get("description"), str) or not raw["description"].strip():
        err("field 'description' is missing or empty")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(x, str) for x in aliases):
        err("field 'aliases' must be a list of strings")
    phases_raw = raw.get("phases")
    if not isinstance(phases_raw, list) or not 3 <= len(phases_raw) <= 5:
        err(
            f"field 'phases' must list 3-5 phases, got {len(phases_raw) if isinstance(phases_raw, list) else 0}"
        )
    phases, seen_phase, seen_sub = [], set(), set()
    for i, ph in enumerate(phases_raw if isinstance(phases_raw, list) else []):
        if not isinstance(ph, dict):
            err(f"phases[{i}]: must be a mapping with name, share, sub_actions")
            continue
        name = ph.get("name")
        w = f"phases[{i}] ({name})" if isinstance(name, str) else f"phases[{i}]"
        if extra := set(ph) - {"name", "share", "sub_actions"}:
            err(f"{w}: unknown field(s) {sorted(extra)}")
        if not isinstance(name, str) or not _SNAKE.match(name):
            err(f"{w}: field 'name' must be a snake_case string, got {name!r}")
        elif name in seen_phase:
            err(f"{w}: duplicate phase '{name}'")
        seen_phase.add(name)
        share = ph.get("share")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
            err(f"{w}: field 'share' must be a number in (0, 1), got {share!r}")
        subs_raw = ph.get("sub_actions")
        if not isinstance(subs_raw, dict) or not 2 <= len(subs_raw) <= 5:
            err(f"{w}: field 'sub_actions' must map 2-5 names to phrasings")
            continue
        subs = []
        for sname, phr in subs_raw.items():
            if not isinstance(sname, str) or not _SNAKE.match(sname):
                err(f"{w}: sub-action name {sname!r} must be snake_case")
            elif sname in seen_sub:
                err(f"{w}: sub-action '{sname}' already appears in an earlier phase")
            seen_sub.add(sname)
            if (
                not isinstance(phr, list)
                or len(phr) < 2
                or not all(isinstance(x, str) and x.strip() for x in phr)
                or len(set(phr)) != len(phr)
            ):
                err(f"{w}: sub-action '{sname}' needs at least 2 distinct non-empty phrasings")
                continue
            subs.append(SubAction(str(sname), tuple(x.strip() for x in phr)))
        if isinstance(share, int | float):
            phases.append(Phase(str(name), float(share), tuple(subs)))
    if len(errors) > n_before:
        return None
    total = sum(p.share for p in phases)
    if abs(total - 1) > 0.011:
        err(f"phase shares sum to {total:.3f}, not 1")
        return None
    return Action(
        dataset,
        str(label),
        raw["description"].strip(),
        tuple(a.lower() for a in aliases),
        tuple(phases),
        str(path),
    )


def load_library(directory: str | Path = LIBRARY_DIR) -> Library:
    """Load and validate every ``*.yaml`` in ``directory`` (relative paths are from the repository root).
    Every problem of every file is collected; if there is any, one LibraryError lists them all (its
    ``errors``), each naming the file, the action, the phase and the field."""
    directory = Path(directory)
    directory = directory if directory.is_absolute() else REPO_ROOT / directory
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise LibraryError(f"{directory}: no library files (*.yaml)")
    actions: dict[str, Action] = {}
    errors: list[str] = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            errors.append(f"{path}: not valid YAML ({e})")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("actions"), dict):
            errors.append(f"{path}: expected a mapping with 'dataset' and 'actions'")
            continue
        dataset = doc.get("dataset")
        if dataset not in DATASETS:
            errors.append(f"{path}: field 'dataset' must be one of {DATASETS}, got {dataset!r}")
            continue
        for label, raw in doc["actions"].items():
            action = _parse_action(dataset, str(label), raw, path, errors)
            if action is None:
                continue
            if action.key in actions:
                errors.append(f"{path}: action '{label}' is also defined in {actions[action.key].source}")
            actions[action.key] = action
    if errors:
        raise LibraryError(errors)
    return Library(actions)


def class_list(dataset: str) -> list[str]:
    """The official class list of a benchmark, in its official order."""
    files = {
        "hmdb51": "hmdb51_classes.txt",
        "ucf101": "ucf101_classInd.txt",
        "kinetics400": "kinetics400_classes.txt",
    }
    lines = [ln.strip() for ln in (CLASSES_DIR / files[dataset]).read_text().splitlines() if ln.strip()]
    return [ln.split(maxsplit=1)[1] for ln in lines] if dataset == "ucf101" else lines


def coverage(lib: Library) -> dict:
    """Which official classes have their own entry (all 552 must), matched by label spelling only.

    Aliases are not used here: a class must not borrow another class's entry. ``alias_collisions``
    lists aliases that spell another class of the same dataset, or that two classes of the dataset
    share: either would make an answer ambiguous, so the validator rejects both.
    """
    out = {}
    for ds in DATASETS:
        labels = {normalize_label(a.label) for a in lib if a.dataset == ds}
        official = class_list(ds)
        normalized = {normalize_label(c) for c in official}
        collisions = sorted(
            f"{a.label}: {al}"
            for a in lib
            if a.dataset == ds
            for al in a.aliases
            if normalize_label(al) in normalized and normalize_label(al) != normalize_label(a.label)
        )
        owners: dict[str, list[str]] = defaultdict(list)
        for a in lib:
            if a.dataset == ds:
                for al in set(map(normalize_label, a.aliases)):
                    owners[al].append(a.label)
        collisions += sorted(
            f"{' & '.join(sorted(v))}: share the alias {k!r}" for k, v in owners.items() if len(v) > 1
        )
        out[ds] = {
            "classes": len(official),
            "missing": [c for c in official if normalize_label(c) not in labels],
            "alias_collisions": collisions,
        }
    return out
