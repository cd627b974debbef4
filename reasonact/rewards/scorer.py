"""The Scorer: one pass over a batch of completions computes every reward component.

TRL calls each reward function separately on the same batch; the Scorer parses every completion,
embeds *all* segments of the batch in one encoder call (repeated texts once, a text cache across
calls), detects sub-actions and computes all components, and keeps the analyses in a small cache
so that the next reward function on the same batch costs nothing.

``default_scorer()`` loads the committed library, its cached phrasing embeddings and the
calibrated thresholds (calibrating, once, the datasets it meets and saving the thresholds with the
cache). Tests and notebooks may build ``Scorer(library, index, encoder)`` themselves and pass it
as ``scorer=`` to any reward function. ``Scorer(model="minilm-static")`` detects with the static
encoder distilled from MiniLM (``reasonact/library/static.py``; its own index and thresholds).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reasonact.library import DATASET_ALIASES, Library, load_library
from reasonact.library.embeddings import build_index, cache_path, save_index
from reasonact.rewards import basic, temporal
from reasonact.rewards.gt import GroundTruth, ground_truth, row
from reasonact.rewards.parse import Parsed, parse
from reasonact.rewards.subaction import Detection, Detector, calibrate, detect, is_calibrated, r_sub

COMPONENTS = tuple(
    f"{p}{c}"
    for p in ("", "perception_", "reasoning_")
    for c in ("subaction", "c_seq", "c_cross", "c_bind", "temporal_consistency")
) + ("format", "format_pa", "accuracy")
# Which segments are embedded: "both" (sentences and their clauses), "leaves" (the clauses of a
# multi-clause sentence, else the sentence: ~40% fewer tokens) or "sentences". On the labelled
# sentences of examples.py: F1 0.844 (both), 0.848 (leaves), 0.804 (sentences: misses the second
# sub-action of a sentence).
SEGMENTS = "leaves"
REASONING = ("observation", "think", "free")  # regions whose text is the reasoning
PERCEPTION = ("observation",)
THINKING = ("think", "free")


log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        log.warning(msg)


@dataclass
class Analysis:
    parsed: Parsed
    gt: GroundTruth
    detections: list[Detection]  # ground-truth sub-actions found in the reasoning
    answer_key: str | None  # library entry the answer names
    components: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.parsed.text


def _regional(detections, segments, regions):
    keep = [i for i, s in enumerate(segments) if s.region in regions]
    remap = {old: new for new, old in enumerate(keep)}
    segs = [segments[i] for i in keep]
    dets = []
    for d in detections:
        if d.segment in remap:
            dets.append(
                Detection(
                    d.name,
                    d.phase,
                    d.score,
                    d.threshold,
                    remap[d.segment],
                    d.start,
                    d.end,
                    d.text,
                    d.region,
                    d.frames,
                )
            )
    return dets, segs


class Scorer:
    def __init__(
        self,
        library: Library | None = None,
        index=None,
        encoder=None,
        calibrate_missing: bool = True,
        cache_path: str | Path | None = None,
        cache_size: int = 4096,
        segments: str = SEGMENTS,
        model: str | None = None,
    ):
        """``model``: the sentence encoder when ``index`` is not given (``None``: the default
        MiniLM; ``"minilm-static"``: the static encoder distilled from it; a local folder)."""
        if segments not in ("both", "leaves", "sentences"):
            raise ValueError("segments must be 'both', 'leaves' or 'sentences'")
        self.segments = segments
        self._library = library
        self._index = index
        self._encoder = encoder
        self.model = model
        self._detector: Detector | None = None
        self.calibrate_missing = calibrate_missing
        self.cache_path = Path(cache_path) if cache_path else None
        self.cache_size = cache_size
        self._analyses: OrderedDict[str, Analysis] = OrderedDict()
        self._lock = threading.Lock()
        self.calibration_reports: dict[str, dict] = {}

    # -- lazily loaded pieces: accuracy and format never load the encoder -------------------------
    @property
    def library(self) -> Library:
        if self._library is None:
            self._library = load_library()
        return self._library

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            if self._index is None:
                self._index = build_index(self.library, self.model)
                self.cache_path = self.cache_path or cache_path(self.library, self._index.model)
            self._detector = Detector(self._index, self._encoder)
        return self._detector

    def ensure_calibrated(self, datasets) -> None:
        """Calibrate thresholds for datasets not calibrated yet; persist them with the index."""
        det = self.detector
        todo = sorted({DATASET_ALIASES.get(d, d) for d in datasets if d} - {None})
        todo = [d for d in todo if not is_calibrated(det, d) and any(a.dataset == d for a in self.library)]
        if not todo or not self.calibrate_missing:
            return
        self.calibration_reports[",".join(todo)] = calibrate(det, self.library, todo)
        det.index.thresholds = dict(det.thresholds)
        if self.cache_path is not None:
            try:
                save_index(det.index, self.cache_path)
            except OSError:
                pass  # a read-only checkout still scores; it just recalibrates next time

    # -- the batch pass ---------------------------------------------------------------------------
    def analyze(self, completions, **columns) -> list[Analysis]:
        with self._lock:  # the caches are not thread-safe; TRL may call async reward functions
            return self._analyze(list(completions), columns)

    def _analyze(self, completions: list, columns: dict) -> list[Analysis]:
        n = len(completions)
        rows = [row(columns, i, n) for i in range(n)]
        keys = [self._key(c, r) for c, r in zip(completions, rows)]
        todo = [i for i, k in enumerate(keys) if k not in self._analyses]
        if todo:
            for i, a in zip(todo, self._compute([completions[i] for i in todo], [rows[i] for i in todo])):
                self._analyses[keys[i]] = a
        out = []
        for k in keys:
            self._analyses.move_to_end(k)
            out.append(self._analyses[k])
        while len(self._analyses) > self.cache_size:
            self._analyses.popitem(last=False)
        return out

    @staticmethod
    def _key(completion, r: dict) -> str:
        try:
            return json.dumps([completion, r], sort_keys=True, default=str)
        except (TypeError, ValueError):
            return repr((completion, r))

    def _compute(self, completions: list, rows: list[dict]) -> list[Analysis]:
        lib = self.library
        parsed = [parse(c) for c in completions]
        gts = [ground_truth(r, lib) for r in rows]
        answer_keys = [basic.answer_action(p.answer, g.dataset, lib) for p, g in zip(parsed, gts)]
        # Sub-actions to look for per completion: the ground truth's, plus the answered action's
        # (the consistency check asks which of the two the reasoning describes).
        alt = [
            lib.actions.get(k) if k and (g.action is None or k != g.action.key) else None
            for k, g in zip(answer_keys, gts)
        ]
        need = any(g.sub_actions for g in gts) or any(alt)
        det = self.detector if need else None
        if det is not None:
            self.ensure_calibrated(
                {g.action.dataset for g in gts if g.action} | {a.dataset for a in alt if a}
            )
        # One encoder call for every segment of the batch.
        chosen = [self._embedded(p) for p in parsed]
        texts = [p.segments[i].embed_text for p, ids in zip(parsed, chosen) for i in ids] if det else []
        emb_all = det.embed(texts) if det and texts else None
        out, pos = [], 0
        for p, g, ak, alt_action, seg_ids in zip(parsed, gts, answer_keys, alt, chosen):
            emb = emb_all[pos : pos + len(seg_ids)] if emb_all is not None else np.zeros((0, 1), np.float32)
            pos += len(seg_ids)
            dets, alt_dets = [], []
            if det is not None and seg_ids:
                phase_name = {s: g.phases[i].name for s, i in g.phase_of.items()}
                dets = detect(p.segments, emb, seg_ids, g.sub_actions, det, phase_name)
                if alt_action is not None:
                    alt_names = [s.name for s in alt_action.sub_actions]
                    alt_dets = detect(
                        p.segments,
                        emb,
                        seg_ids,
                        alt_names,
                        det,
                        {s.name: alt_action.phase_of(s.name) for s in alt_action.sub_actions},
                    )
            a = Analysis(p, g, dets, ak)
            try:
                self._components(a, alt_action, alt_dets)
            except Exception as e:  # noqa: BLE001 - one odd completion must not stop a training step
                _warn_once(f"reward components failed on one completion ({type(e).__name__}: {e}); scored 0")
                a.components = {k: 0.0 for k in COMPONENTS}
                a.details = {"error": f"{type(e).__name__}: {e}"}
            out.append(a)
        return out

    def _embedded(self, p: Parsed) -> list[int]:
        """Indices of the segments to embed (see SEGMENTS)."""
        split = {s.sentence for s in p.segments if s.level == "clause"}
        keep = []
        for i, s in enumerate(p.segments):
            if not s.embed_text:
                continue
            if self.segments == "sentences" and s.level == "clause":
                continue
            if self.segments == "leaves" and s.level == "sentence" and s.sentence in split:
                continue
            keep.append(i)
        return keep

    def _components(self, a: Analysis, alt_action, alt_dets: list[Detection]) -> None:
        p, g, lib = a.parsed, a.gt, self.library
        detectable = set(self._detector.rows) if self._detector is not None else set()
        c = a.components
        c["format"] = float(basic.format_ok(p.text))
        c["format_pa"] = float(basic.format_ok(p.text, process_aware=True))
        c["accuracy"] = float(basic.is_correct(p.answer, g.label, g.dataset, g.options, lib))
        finder = basic.mentions_for(lib, g.action.dataset if g.action else g.dataset)
        evidence_key = None
        if g.action is not None and alt_action is not None:
            # Which of the two actions does the reasoning describe? (ties: undecided)
            own = r_sub(a.detections, g.sub_actions, detectable)["r_sub"]
            other = r_sub(alt_dets, [s.name for s in alt_action.sub_actions], detectable)["r_sub"]
            evidence_key = g.action.key if own > other else alt_action.key if other > own else None
        elif g.action is not None and a.detections:
            evidence_key = g.action.key
        # The PA spans only differ from the whole reasoning when there is an observation block;
        # without one, perception has nothing to score and reasoning is the whole reasoning.
        spans = [("", REASONING)]
        if "observation" in p.blocks:
            spans += [("perception_", PERCEPTION), ("reasoning_", THINKING)]
        for prefix, regions in spans:
            dets, segs = _regional(a.detections, p.segments, regions)
            sub = r_sub(dets, g.sub_actions, detectable)
            mentions = temporal.phase_mentions(segs, g)
            seq = temporal.c_seq(dets, segs, g, mentions)
            bind = temporal.c_bind(dets, segs, g, mentions)
            text = " ".join(s.text for s in segs if s.level == "sentence")
            claim_list = temporal.claims(segs, finder)
            cross = temporal.c_cross(text, claim_list, a.answer_key, evidence_key)
            c[f"{prefix}subaction"] = sub["r_sub"]
            c[f"{prefix}c_seq"] = seq["c_seq"]
            c[f"{prefix}c_cross"] = cross["c_cross"]
            c[f"{prefix}c_bind"] = bind["c_bind"]
            c[f"{prefix}temporal_consistency"] = temporal.c_tc(seq["c_seq"], cross["c_cross"], bind["c_bind"])
            if not prefix:
                a.details = {
                    "subaction": sub,
                    "c_seq": seq,
                    "c_bind": bind,
                    "c_cross": cross,
                    "claims": [(cl.key, cl.start, cl.end) for cl in claim_list],
                    "answer": p.answer,
                    "answer_action": a.answer_key,
                    "label_action": g.action.key if g.action else None,
                }
        if len(spans) == 1:
            for name in ("subaction", "c_seq", "c_cross", "c_bind", "temporal_consistency"):
                c[f"perception_{name}"] = 0.0
                c[f"reasoning_{name}"] = c[name]
        for k, v in c.items():  # belt and braces: every component finite and in [0, 1]
            c[k] = float(min(1.0, max(0.0, v))) if np.isfinite(v) else 0.0


_DEFAULT: Scorer | None = None


def default_scorer() -> Scorer:
    """The process-wide Scorer over the committed library (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Scorer()
    return _DEFAULT


def set_default_scorer(scorer: Scorer | None) -> None:
    global _DEFAULT
    _DEFAULT = scorer


_BY_MODEL: dict[str, Scorer] = {}


def scorer_for(model: str | None) -> Scorer:
    """The process-wide Scorer for a recipe's ``data.embedding_model``: ``None`` -> ``default_scorer()``
    (MiniLM); ``"minilm-static"`` or a local encoder folder -> one Scorer per name, created on first use."""
    if model is None:
        return default_scorer()
    if model not in _BY_MODEL:
        _BY_MODEL[model] = Scorer(model=model)
    return _BY_MODEL[model]
