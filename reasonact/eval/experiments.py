"""The paper's tables as runnable experiments: ``configs/experiments/table1.yaml`` and ``table2.yaml``.

    result = run_table("table1", "tiny")          # what `reasonact experiments table1 --profile tiny` calls
    spec = load_table("table2")                   # parsed and checked; errors name the file and the row

**A row** is a chain of stages from the base model: ``[]`` is the base itself, ``[fre, vsft]`` the
curriculum up to V-SFT, ``[vsft]`` V-SFT without FRE. Leaving a stage out of the chain is how an
ablation skips it. Each stage may override keys of its own recipe section (``set``: dotted keys such
as ``tgrpo.weights.subaction``) and T-GRPO may detect sub-actions with a share of the library
(``library_fraction``, ``Library.subset``; the reward only, evaluation keeps the whole library). The
last stage of the chain is the one evaluated (``run_eval``: SynthAct test split on the tiny profile,
every seed of ``eval.seeds``; ``eval.clips_per_class`` in the table, or ``--clips-per-class``, takes the
first N clips of each class instead of all of them, so that every class and the order-only pair stay in).

**The order probe.** The test split holds few clips of the order-only pair (sit, stand: the same poses,
one played backwards), too few for a tight interval on "ordered vs shuffled". With
``eval.order_clips_per_class: N`` every evaluated model also runs on N clips of each of
``eval.shuffle_labels`` rendered for this purpose (SynthAct split ``order``: clip seeds no train/val/test
clip has, the profile's level and size), ordered and shuffled. The table's sit/stand columns then come from the probe; accuracy and
the other columns from the test clips.

**Sharing and resume.** A trained stage lives in ``<root>/_stages/<key>/``, where ``key`` hashes what
its weights depend on (its recipe section, LoRA, the model, its data, its library share) and the key
of the stage before it: rows with the same prefix train it once (all reward ablations reuse one
FRE -> V-SFT). That folder is a run folder in the ``paths.STAGES`` layout: the stage's own folder
plus links to the folders of the stages before it, so the trainers and ``run_eval`` merge exactly
the chain's adapters. Evaluations are keyed by the stage key and the evaluation settings, in
``<root>/_evals/<key>/``. A finished stage or evaluation (``done.json``, written last) is never
redone; an interrupted one resumes from its checkpoints / completions. FRE and V-SFT data are made
once per data settings in ``<root>/_data/<key>/`` (template teacher + filter, FRE mixture). ``jobs=N``
(``--jobs``) trains and evaluates what does not depend on each other in N processes (``eval/parallel.py``).

The outputs (``eval/tables.py``) go to ``<root>/<table>_<profile>/``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from reasonact.config import REPO_ROOT, ConfigError, Recipe, load_config
from reasonact.cot.filter import generate_cot
from reasonact.cot.reasoning import build_fre_data
from reasonact.data.manifest import read_manifest, write_manifest
from reasonact.data.synthact import CLASSES, ensure_dataset, generate
from reasonact.eval.experiment_config import (  # noqa: F401  (re-exported: the tables' schema)
    ORDER,
    TABLE_DIR,
    ExperimentConfigError,
    RowSpec,
    StageSpec,
    TableSpec,
    expand_overrides,
    load_table,
)
from reasonact.eval.parallel import run_experiment_jobs
from reasonact.eval.protocols import run_eval
from reasonact.eval.tables import build_table, eval_metrics, summary_json, write_outputs
from reasonact.library import load_library
from reasonact.paths import FOLDERS, GENERATOR_VERSION, STAGES, locked
from reasonact.rewards.scorer import Scorer
from reasonact.train.base import ensure_model
from reasonact.train.sft import train_stage
from reasonact.train.tgrpo_stage import train_tgrpo
from reasonact.vlm import base_settings

DEFAULT_ROOT = REPO_ROOT / "runs" / "experiments"
RESULTS_DIR = REPO_ROOT / "results"  # committed tables (summary_json): whole runs of configs/experiments only


def git_commit() -> str | None:
    """The repository's commit, 12 hex digits (``-dirty`` with uncommitted changes to tracked files outside
    ``results/``, which a run rewrites), or None outside a git checkout. ``status`` takes the index lock only if
    it is free (git's optional lock) and saves the refreshed index: only the first call after a clone pays."""
    import subprocess

    def git(*args):
        cmd = ["git", *args]
        return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return None
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = status.returncode == 0 and bool(status.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


# Fields that do not change a stage's weights: logging, checkpointing, where the data file lies, and the
# learning-curve evaluation (the runner passes no eval_fn to FRE / V-SFT; T-GRPO's before-check draws random
# numbers before training, so its eval_clips stays in the key).
NOT_IN_KEY = {"logging_steps", "save_steps", "report_to", "log_completions", "data", "eval_steps"}
NOT_IN_SFT_KEY = NOT_IN_KEY | {"eval_clips"}
# Teacher fields about the transport, not the chains.
TEACHER_TRANSPORT = {"api_key_env", "timeout_s", "max_retries", "concurrency", "cache_dir", "batch_size"}  # fmt: skip

# ---- keys --------------------------------------------------------------------------------------------


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _files_hash(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _repo_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def _asdict(obj, drop=()) -> dict:
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in drop}


def base_key(recipe: Recipe) -> str:
    """What the base model's outputs depend on: the model section (not LoRA), the perception base's
    recipe on the tiny profile, the frames."""
    parts = {"model": _asdict(recipe.model, {"lora"}), "video": _asdict(recipe.video)}
    if recipe.model.name_or_path is None and recipe.model.use_base:
        parts["base"] = base_settings(recipe)
    return f"base-{_hash(parts)}"


def data_key(recipe: Recipe) -> str:
    """What the FRE mixture and the CoT chains depend on."""
    d = recipe.data
    parts = {"teacher": _asdict(recipe.teacher, TEACHER_TRANSPORT), "fre_data": _asdict(recipe.fre_data),
             "synthact": [d.synthact_clips_per_class, d.synthact_level, d.synthact_size, recipe.seed],
             "frames": recipe.video.num_frames, "datasets": d.datasets,
             "library": _files_hash(_repo_path(d.library_dir).glob("*.yaml"))}  # fmt: skip
    return f"data-{_hash(parts)}"


def stage_key(stage: str, recipe: Recipe, parent: str, spec: StageSpec) -> str:
    """What a trained stage's weights depend on, and the stage before it (``parent``)."""
    cfg = getattr(recipe, stage)
    section = _asdict(cfg, NOT_IN_KEY if stage == "tgrpo" else NOT_IN_SFT_KEY)
    parts = {"stage": stage, "parent": parent, "section": section, "lora": _asdict(recipe.model.lora),
             "format": recipe.teacher.format, "video": _asdict(recipe.video)}  # fmt: skip
    if stage in ("fre", "vsft"):
        parts["data"] = _files_hash([_repo_path(cfg.data)]) if cfg.data else data_key(recipe)
    else:
        d = recipe.data
        parts["clips"] = (_files_hash([_repo_path(cfg.manifest)]) if cfg.manifest else
                          [d.synthact_clips_per_class, d.synthact_level, d.synthact_size, recipe.seed])  # fmt: skip
        parts["library"] = [spec.library_fraction, spec.library_seed,
                            _files_hash(_repo_path(d.library_dir).glob("*.yaml"))]  # fmt: skip
    return f"{stage}-{_hash(parts)}"


def eval_key(model_key: str, recipe: Recipe, clips_per_class: int | str | None) -> str:
    """An evaluation: the model, the decoding and seeds, the frames, the test clips (``order-N``: the order
    probe's)."""
    d = recipe.data
    parts = {"model": model_key, "eval": _asdict(recipe.eval, {"compare_base", "efficiency_clips"}),
             "video": _asdict(recipe.video), "format": recipe.teacher.format, "clips_per_class": clips_per_class,
             "test": [d.synthact_clips_per_class, d.synthact_level, d.synthact_size, recipe.seed]}  # fmt: skip
    return f"eval-{_hash(parts)}"


# ---- the plan ----------------------------------------------------------------------------------------


@dataclass
class Node:
    """A model of a chain: the base (``stage == "base"``) or a trained stage on top of ``parent``."""

    stage: str
    key: str
    recipe: Recipe
    parent: Node | None = None
    spec: StageSpec | None = None

    def lineage(self) -> list[Node]:
        """The trained stages from the first to this one (the base excluded)."""
        out, n = [], self
        while n is not None and n.stage != "base":
            out.append(n)
            n = n.parent
        return out[::-1]


class Experiment:
    """Plans, trains and evaluates a table's rows. ``train(stage, recipe, run, **options)`` and
    ``evaluate(recipe, run, stage, out, manifest, progress)`` are injectable (tests pass cheap fakes);
    the defaults call ``sft.train_stage`` / ``tgrpo_stage.train_tgrpo`` and ``protocols.run_eval``."""

    def __init__(self, spec: TableSpec, profile: str = "tiny", overrides: dict | None = None, root=None,
                 clips_per_class: int | None = None, train_seeds=None, train=None, evaluate=None, log=print,
                 progress: bool = False, command: str | None = None, order_clips: int | None = None, jobs: int = 1):  # fmt: skip
        self.spec, self.source = spec, profile
        self.root = Path(root) if root else DEFAULT_ROOT
        # None: the table's setting; 0: every clip of the test split
        self.clips_per_class = spec.clips_per_class if clips_per_class is None else (clips_per_class or None)
        self.train_seeds = list(train_seeds or spec.train_seeds or [None])
        self.order_clips = spec.order_clips if order_clips is None else (order_clips or None)
        self.train_fn, self.evaluate_fn = train or train_stage_default, evaluate or evaluate_default
        self.log, self.progress, self.command, self.jobs = log or (lambda *a: None), progress, command, jobs
        profile_recipe = load_config(profile)
        self.overrides = expand_overrides(profile_recipe, {**spec.set, **(overrides or {})})
        self.changes = sorted(set(overrides or {}) - {"data.synthact_level"}) + [  # not the table's own run
            f"--{k} {v or 0}" for k, v, own in [("clips-per-class", self.clips_per_class, spec.clips_per_class),
                                                ("order-clips-per-class", self.order_clips, spec.order_clips),
                                                ("train-seeds", self.train_seeds, spec.train_seeds or [None])] if v != own
        ]  # fmt: skip
        self.recipe = load_config(profile, self.overrides)
        self.profile = self.recipe.profile

    def _recipe(self, extra: dict) -> Recipe:
        try:
            return load_config(self.source, {**self.overrides, **expand_overrides(self.recipe, extra)})
        except ConfigError as e:
            raise ExperimentConfigError(f"{self.spec.path}: {e}") from None

    def chain(self, row: RowSpec, train_seed=None) -> Node:
        seeds = {f"{s}.seed": train_seed for s in ORDER} if train_seed is not None else {}
        base = self._recipe(seeds)
        node = Node("base", base_key(base), base)
        for s in row.stages:
            recipe = self._recipe({**seeds, **dict(s.set)})
            node = Node(s.stage, stage_key(s.stage, recipe, node.key, s), recipe, node, s)
        return node

    def rows(self, names=None) -> list[RowSpec]:
        """The selected rows, with the baseline row first when it is not among them (the paired
        differences need it; it costs one evaluation of the base model)."""
        selected = self.spec.select(names)
        if all(r.name != self.spec.baseline for r in selected):
            selected = [self.spec.row(self.spec.baseline), *selected]
        return selected

    def stage_dir(self, node: Node) -> Path:
        return self.root / "_stages" / node.key

    def eval_dir(self, node: Node, order: bool = False) -> Path:
        if order:  # the order probe: its own clips, so its own evaluation
            return self.root / "_evals" / eval_key(node.key, node.recipe, f"order-{self.order_clips}")
        return self.root / "_evals" / eval_key(node.key, node.recipe, self.clips_per_class)

    def plan(self, rows=None) -> list[dict]:
        """Per row and training seed: the chain's stage keys (``done``: already trained), the evaluation."""
        out = []
        for t in self.train_seeds:
            for row in self.rows(rows):
                node = self.chain(row, t)
                stages = [{"stage": n.stage, "key": n.key, "done": (self.stage_dir(n) / "done.json").is_file()}
                          for n in node.lineage()]  # fmt: skip
                ev = [self.eval_dir(node)] + ([self.eval_dir(node, order=True)] if self.order_clips else [])
                out.append({"row": row.name, "train_seed": t, "stages": stages, "eval": ev[0].name,
                            "eval_done": all((e / "done.json").is_file() for e in ev),
                            "order_eval": ev[1].name if self.order_clips else None})  # fmt: skip
        return out

    # -- doing it ------------------------------------------------------------------------------------
    def ensure_stage(self, node: Node) -> dict:
        d = self.stage_dir(node)
        done = d / "done.json"
        if done.is_file():
            self.log(f"  {node.stage} {node.key}: trained before, reused")
            return json.loads(done.read_text())
        d.mkdir(parents=True, exist_ok=True)
        for anc in node.lineage()[:-1]:  # the earlier stages' folders, linked: their adapters get merged
            link, target = d / STAGES[anc.stage], self.stage_dir(anc) / STAGES[anc.stage]
            if link.is_symlink() or link.exists():
                if link.resolve() == target.resolve():
                    continue
                link.unlink()
            os.symlink(os.path.relpath(target, d), link)
        self.log(f"  {node.stage} {node.key}: training ...")
        t0 = time.time()
        spec = node.spec or StageSpec(node.stage)
        metrics = self.train_fn(node.stage, node.recipe, d, library_fraction=spec.library_fraction,
                                library_seed=spec.library_seed, data_root=self.root / "_data", progress=self.progress)  # fmt: skip
        adapter = d / STAGES[node.stage] / "adapter" / "adapter_config.json"
        if not adapter.is_file():
            raise RuntimeError(f"{node.stage} finished without writing {adapter}")
        keep = ("steps", "train_seconds", "seconds_per_step", "train_loss_first", "train_loss_last", "last_log")  # fmt: skip
        info = {"key": node.key, "stage": node.stage, "parent": node.parent.key, "set": dict(spec.set),
                "library_fraction": spec.library_fraction, "library_seed": spec.library_seed,
                "seconds": round(time.time() - t0, 1), "metrics": {k: (metrics or {}).get(k) for k in keep}}  # fmt: skip
        done.write_text(json.dumps(info, indent=1, default=str) + "\n")
        self.log(f"  {node.stage} {node.key}: trained in {info['seconds']} s")
        return info

    def ensure_eval(self, node: Node, order: bool = False) -> dict:
        d = self.eval_dir(node, order)
        done = d / "done.json"
        what = "order probe" if order else "eval"
        if done.is_file():
            self.log(f"  {what} {d.name}: evaluated before, reused")
            return json.loads(done.read_text())
        t0 = time.time()
        run = self.stage_dir(node) if node.stage != "base" else d
        self.log(f"  {what} {d.name} ({node.stage} {node.key}) ...")
        data = self.root / "_data"
        with locked(data):  # jobs side by side: one makes the manifest, the others wait for it
            if order:
                manifest = order_manifest(node.recipe, self.order_clips, data)
            else:
                manifest = subset_manifest(node.recipe, self.clips_per_class, data)
        summary = self.evaluate_fn(node.recipe, run, node.stage, d, manifest, self.progress)

        info = {"key": d.name, "model": node.key, "stage": node.stage, "clips_per_class": self.clips_per_class,
                "seconds": round(time.time() - t0, 1), "metrics": eval_metrics(summary)}  # fmt: skip
        d.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(info, indent=1, default=str) + "\n")
        self.log(f"  {what} {d.name}: {info['seconds']} s")
        return info

    def run(self, rows=None, out=None) -> dict:
        """Train and evaluate the rows (default: every non-optional row), write the tables, return them."""

        selected = self.rows(rows)
        t0 = time.time()
        if self.jobs > 1:  # every stage and evaluation side by side first; the loop below then reuses them
            run_experiment_jobs(self, selected, self.jobs)
        results = []
        for t in self.train_seeds:
            for row in selected:
                self.log(
                    f"[{self.spec.name}] row {row.name}" + (f" (train seed {t})" if t is not None else "")
                )
                node = self.chain(row, t)
                stages = [self.ensure_stage(n) for n in node.lineage()]
                ev = self.ensure_eval(node)
                order = self.ensure_eval(node, order=True) if self.order_clips else None
                share = bonus_share(self.stage_dir(node)) if node.stage == "tgrpo" else None
                results.append(
                    {
                        "row": row.name,
                        "train_seed": t,
                        "stages": stages,
                        "eval": ev,
                        "order_eval": order,
                        "bonus_share": share,
                    }
                )
        table = build_table(self.spec, selected, results)
        table["meta"] = self.meta(time.time() - t0)
        out = Path(out) if out else self.root / f"{self.spec.name}_{self.profile}"
        table["files"] = write_outputs(table, out)
        summary = summary_json(table, git_commit(), self.recipe.data.synthact_level)
        paths = [out / "summary.json"]
        whole = [r.name for r in selected] == [r.name for r in self.spec.select()]
        if whole and self.spec.path.parent == TABLE_DIR:  # a whole table of configs/experiments: commit it
            committed = RESULTS_DIR / f"{self.spec.name}_{self.profile}{self.level_suffix()}.json"
            paths += [] if self.changes else [committed]
            if self.changes:
                self.log(f"{committed} not written: this run changes the table ({', '.join(self.changes)})")
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        table["files"]["summary"] = [str(p) for p in paths]
        return table

    def level_suffix(self) -> str:
        """``_<level>`` when the SynthAct level is not the profile's own (``results/table1_tiny_medium.json``)."""
        own = load_config(self.source).data.synthact_level
        level = self.recipe.data.synthact_level
        return "" if level == own else f"_{level}"

    def meta(self, wall: float) -> dict:
        r = self.recipe
        return {"table": self.spec.name, "config": str(self.spec.path), "profile": self.profile,
                "recipe": r.source, "overrides": self.overrides, "root": str(self.root),
                "clips_per_class": self.clips_per_class, "order_clips_per_class": self.order_clips,
                "order_labels": list(r.eval.shuffle_labels), "eval_seeds": list(r.eval.seeds), "train_seeds": self.train_seeds,
                "decoding": {k: getattr(r.eval, k) for k in ("temperature", "top_p", "max_new_tokens")},
                "steps": {s: getattr(r, s).max_steps for s in ORDER}, "wall_seconds": round(wall, 1),
                "chance": self._chance(), "command": self.command or
                f"reasonact experiments {self.spec.name} --profile {self.source}"}  # fmt: skip

    @staticmethod
    def _chance() -> float:
        """Every row is evaluated on the SynthAct test split (``evaluate_default``): 1 / its classes."""

        return 1 / len(CLASSES)


# ---- the default trainer and evaluator -----------------------------------------------------------------


def stage_data(recipe: Recipe, data_root: Path) -> dict[str, Path]:
    """The FRE mixture and the filtered CoT chains of the recipe, made once per ``data_key``."""
    d = Path(data_root) / data_key(recipe) / FOLDERS["cot"]
    paths = {"vsft": d / "cot.jsonl", "fre": d / "fre" / "fre.jsonl"}
    if not (d / "done.json").is_file():
        train = ensure_dataset(recipe)["manifests"]["train"]
        cot = generate_cot(train, d, teacher=recipe.teacher.kind, recipe=recipe)
        fre = build_fre_data(recipe, d / "fre")
        (d / "done.json").write_text(
            json.dumps({"kept": cot["kept"], "fre_rows": fre["num_examples"]}) + "\n"
        )
    return paths


def subset_scorer(recipe: Recipe, fraction: float, seed: int = 0):
    """A rewards Scorer over ``fraction`` of the library's sub-actions (the library-size ablation)."""

    return Scorer(load_library(recipe.data.library_dir).subset(fraction, seed))


def call_train_tgrpo(recipe: Recipe, run: Path, scorer=None, progress: bool = False) -> dict:
    """The one call into reasonact/train/tgrpo_stage.py."""

    return train_tgrpo(recipe, run=run, resume=True, scorer=scorer, progress=progress)


def train_stage_default(stage: str, recipe: Recipe, run: Path, *, library_fraction: float = 1.0,
                        library_seed: int = 0, data_root=None, progress: bool = False) -> dict:  # fmt: skip
    """Train ``stage`` into the run folder ``run`` (which links the earlier stages' folders)."""
    recipe, data_root = copy.deepcopy(recipe), data_root or DEFAULT_ROOT / "_data"
    ensure_model(recipe, progress=progress)  # the tiny base this row starts from, built once if missing
    if stage in ("fre", "vsft"):
        cfg = getattr(recipe, stage)
        if not cfg.data:
            with locked(data_root):  # jobs side by side: one makes the data, the others wait for it
                cfg.data = str(stage_data(recipe, data_root)[stage])
        return train_stage(recipe, stage, run=run, resume=True, progress=progress)
    scorer = subset_scorer(recipe, library_fraction, library_seed) if library_fraction < 1 else None
    return call_train_tgrpo(recipe, run, scorer, progress)


def subset_manifest(recipe: Recipe, clips_per_class: int | None, data_root: Path) -> Path | None:
    """The first ``clips_per_class`` clips of each class of the profile's SynthAct test split, as a
    manifest in ``data_root`` (None: the whole split, the protocol's default). Its video paths always point
    into the dataset just checked: a list written by another checkout (a shared or copied ``--root``) is
    rewritten, since that checkout's folder may since hold clips of another level."""
    if not clips_per_class:
        return None
    src = Path(ensure_dataset(recipe)["manifests"]["test"])
    path = Path(data_root) / f"synthact_test-{_files_hash([src])}-{clips_per_class}-per-class.jsonl"
    taken: dict[str, int] = {}
    keep = []
    for rec in read_manifest(src):  # video paths made absolute
        if taken.get(rec["label"], 0) < clips_per_class:
            taken[rec["label"]] = taken.get(rec["label"], 0) + 1
            keep.append(rec)
    return path if path.is_file() and read_manifest(path) == keep else write_manifest(keep, path)


def bonus_share(stage_dir: Path) -> float | None:
    """The share of prompt groups paid the shuffled-frame bonus, averaged over a T-GRPO stage's logged steps
    (``tgrpo/bonus_group_share`` in its metrics.json curve); None when it logged none."""
    path = Path(stage_dir) / STAGES["tgrpo"] / "metrics.json"
    curve = json.loads(path.read_text()).get("curve", []) if path.is_file() else []
    shares = [c["tgrpo/bonus_group_share"] for c in curve if "tgrpo/bonus_group_share" in c]
    return sum(shares) / len(shares) if shares else None


def order_manifest(recipe: Recipe, clips_per_class: int, data_root: Path) -> Path:
    """The order probe's clips: ``clips_per_class`` of each of ``eval.shuffle_labels``, rendered once per
    settings into ``data_root`` (SynthAct split ``order``, the profile's level, size and seed)."""
    d, labels = recipe.data, list(recipe.eval.shuffle_labels)
    settings = [labels, d.synthact_level, d.synthact_size, recipe.seed, GENERATOR_VERSION]
    name = f"synthact_order-{_hash(settings)}-{clips_per_class}"
    path = Path(data_root) / f"{name}-per-class.jsonl"
    if not path.is_file():
        made = generate(Path(data_root) / name, clips_per_class, seed=recipe.seed, level=d.synthact_level,
                        size=d.synthact_size, splits=(("order", 1.0),), classes=labels, progress=False)  # fmt: skip
        write_manifest(read_manifest(made["manifests"]["order"]), path)  # video paths made absolute
    return path


def evaluate_default(
    recipe: Recipe, run: Path, stage: str, out: Path, manifest=None, progress: bool = False
) -> dict:
    """``run_eval`` on ``manifest`` (None: the profile's protocol, the SynthAct test split) into ``out``; the
    manifest's name up to its first ``-`` names its results (``synthact_test``, ``synthact_order``)."""

    manifests = {Path(manifest).stem.split("-")[0]: str(manifest)} if manifest else None
    ensure_model(recipe, progress=progress)
    return run_eval(
        recipe, run=run, stage=stage, manifests=manifests, out=out, compare_base=False, progress=progress
    )


def run_table(table: str | Path, profile: str = "tiny", rows=None, out=None, root=None, overrides=None,
              clips_per_class=None, train_seeds=None, log=print, progress: bool = False, **kw) -> dict:  # fmt: skip
    """Load the table, train and evaluate its rows, write ``table.md``, ``results.json``, ``accuracy.png``."""
    spec = load_table(table)
    exp = Experiment(
        spec, profile, overrides, root, clips_per_class, train_seeds, log=log, progress=progress, **kw
    )
    return exp.run(rows, out)
