"""Stage 1 (FRE) data: text-only reasoning chains ``<think>…</think><answer>…</answer>``.

    summary = build_fre_data(load_config("tiny"), "runs/tiny/02_cot_generation/fre")  # JSONL + datasets folder

The paper's four skills, two datasets each, from the Hugging Face hub (train split; a local copy in
``fre_data.local_dirs`` replaces the hub):

| source          | hub id (config)                                   | fields used                                                         |
|-----------------|---------------------------------------------------|---------------------------------------------------------------------|
| gsm8k           | ``openai/gsm8k`` (``main``)                       | question; answer = solution lines with ``<<48/2=24>>`` calculator notes, last line ``#### 72`` |
| math            | ``EleutherAI/hendrycks_math`` (algebra, counting_and_probability, geometry, intermediate_algebra, number_theory, prealgebra, precalculus) | problem, level, type, solution (answer in the last ``\\boxed{}``) |
| logiqa          | ``lucasmccabe/logiqa`` (revision ``refs/convert/parquet``: main holds a loading script, which datasets >= 4 no longer runs) | context, query, options (4), correct_option (index 0-3; letters accepted) |
| reclor          | ``metaeval/reclor`` (json: train, val)            | context, question, answers (4), label (index 0-3), id_string        |
| commonsense_qa  | ``tau/commonsense_qa``                            | id, question, question_concept, choices {label, text} (5), answerKey |
| strategyqa      | ``ChilleD/StrategyQA``                            | qid, term, description, question, answer (bool), facts (list or one string) |
| arc             | ``allenai/ai2_arc`` (ARC-Challenge, ARC-Easy)     | id, question, choices {text, label}, answerKey (``A``-``E`` or ``1``-``5``) |
| openbookqa      | ``allenai/openbookqa`` (``additional``: adds the open-book fact) | id, question_stem, choices {text, label}, answerKey, fact1 |

GSM8K and MATH ship worked solutions: those are the chains. The others ship no rationale, so the
think block is a short scaffold built from what the row has — the question restated, the evidence
the dataset provides (StrategyQA's facts, OpenBookQA's fact), the options weighed, the conclusion.
Multiple-choice answers are the option letter; StrategyQA's are ``yes``/``no``.

``generated`` (the tiny profile, offline) makes text tasks with verifiable answers, seeded
(``reasoning_tasks.py``): multi-step arithmetic, ordering the phases of a library action, "which
sub-action comes right after X", and comparisons; ``verify(example, library)`` recomputes answers.

The mixture takes ``round(weight / sum(weights) * num_examples)`` examples from each source
(largest remainder), without replacement: a source with fewer rows gives all it has, and the
shortfall is reported.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from reasonact.cot.reasoning_tasks import GENERATED, example, generate_tasks
from reasonact.library import DATASET_ALIASES, load_library

LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class Source:
    hub_id: str
    configs: tuple[str | None, ...] = (None,)
    revision: str | None = None


SOURCES = {
    "gsm8k": Source("openai/gsm8k", ("main",)),
    "math": Source(
        "EleutherAI/hendrycks_math",
        (
            "algebra",
            "counting_and_probability",
            "geometry",
            "intermediate_algebra",
            "number_theory",
            "prealgebra",
            "precalculus",
        ),
    ),
    "logiqa": Source("lucasmccabe/logiqa", (None,), "refs/convert/parquet"),
    "reclor": Source("metaeval/reclor"),
    "commonsense_qa": Source("tau/commonsense_qa"),
    "strategyqa": Source("ChilleD/StrategyQA"),
    "arc": Source("allenai/ai2_arc", ("ARC-Challenge", "ARC-Easy")),
    "openbookqa": Source("allenai/openbookqa", ("additional",)),
}


def _options_text(options: list[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {str(o).strip()}" for i, o in enumerate(options))


def _index(value, n: int, labels: list[str] | None = None) -> int | None:
    """An answer given as an index (0-based int or digit string), a letter, or one of ``labels``."""
    if isinstance(value, bool) or value is None:
        return None
    s = str(value).strip()
    if labels and s in labels:
        return labels.index(s)
    if s.isdigit():
        i = int(s)
        return i if 0 <= i < n else None
    if len(s) == 1 and s.upper() in LETTERS[:n]:
        return LETTERS.index(s.upper())
    return None


def _multiple_choice(source, ident, question, options, correct, evidence: list[str] = (), context: str = ""):
    if correct is None or not options:
        return None
    letter, text = LETTERS[correct], str(options[correct]).strip()
    q = (f"{context.strip()}\n" if context else "") + f"{question.strip()}\n{_options_text(options)}"
    others = ", ".join(LETTERS[i] for i in range(len(options)) if i != correct)
    steps = [f"The question asks: {question.strip()}"]
    steps += [f"Relevant fact: {e.strip().rstrip('.')}." for e in evidence if str(e).strip()]
    steps.append(
        f'Option {letter} says "{text}", which is what the {"passage" if context else "facts"} support; '
        f"options {others} do not fit as well."
    )
    steps.append(f"So the answer is {letter}.")
    return example(source, ident, q, " ".join(steps), letter)


# ---- formatters: one row in the dataset's own schema -> an example (None: unusable row) -----------


def format_gsm8k(row: dict, i: int = 0) -> dict | None:
    solution, _, final = str(row["answer"]).rpartition("####")
    final = final.strip().replace(",", "")
    if not final:
        return None
    steps = re.sub(r"<<[^>]*>>", "", solution).strip()  # calculator annotations are not reasoning
    return example("gsm8k", row.get("id", i), row["question"], steps, final)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1].strip() if depth == 0 else None


def format_math(row: dict, i: int = 0) -> dict | None:
    answer = last_boxed(str(row["solution"]))
    if not answer:
        return None
    return example(
        "math",
        row.get("id", i),
        row["problem"],
        str(row["solution"]),
        answer,
        {"level": row.get("level"), "type": row.get("type")},
    )


def format_logiqa(row: dict, i: int = 0) -> dict | None:
    opts = list(row["options"])
    return _multiple_choice(
        "logiqa",
        row.get("id", i),
        row["query"],
        opts,
        _index(row["correct_option"], len(opts)),
        context=row["context"],
    )


def format_reclor(row: dict, i: int = 0) -> dict | None:
    opts = list(row["answers"])
    return _multiple_choice(
        "reclor",
        row.get("id_string", i),
        row["question"],
        opts,
        _index(row["label"], len(opts)),
        context=row["context"],
    )


def _choices(row: dict) -> tuple[list[str], list[str]]:
    ch = row["choices"]
    return [str(x) for x in ch["text"]], [str(x) for x in ch["label"]]


def format_commonsense_qa(row: dict, i: int = 0) -> dict | None:
    texts, labels = _choices(row)
    concept = row.get("question_concept")
    ev = [f"the question is about {concept}"] if concept else []
    return _multiple_choice(
        "commonsense_qa",
        row.get("id", i),
        row["question"],
        texts,
        _index(row.get("answerKey"), len(texts), labels),
        ev,
    )


def format_arc(row: dict, i: int = 0) -> dict | None:
    texts, labels = _choices(row)  # some questions label their options 1-4 instead of A-D
    return _multiple_choice(
        "arc", row.get("id", i), row["question"], texts, _index(row.get("answerKey"), len(texts), labels)
    )


def format_openbookqa(row: dict, i: int = 0) -> dict | None:
    texts, labels = _choices(row)
    ev = [row["fact1"]] if row.get("fact1") else []
    return _multiple_choice(
        "openbookqa",
        row.get("id", i),
        row["question_stem"],
        texts,
        _index(row.get("answerKey"), len(texts), labels),
        ev,
    )


def format_strategyqa(row: dict, i: int = 0) -> dict | None:
    if not isinstance(row.get("answer"), bool):
        return None
    facts = row.get("facts") or []
    facts = [f for f in (facts.split("\n") if isinstance(facts, str) else facts) if str(f).strip()]
    answer = "yes" if row["answer"] else "no"
    steps = [f"{str(f).strip().rstrip('.')}." for f in facts] or [
        f"I recall what I know about {row.get('term') or 'this'}."
    ]
    steps.append(f'Putting these facts together, the answer to "{row["question"].strip()}" is {answer}.')
    return example("strategyqa", row.get("qid", i), row["question"], " ".join(steps), answer)


FORMATTERS = {
    "gsm8k": format_gsm8k,
    "math": format_math,
    "logiqa": format_logiqa,
    "reclor": format_reclor,
    "commonsense_qa": format_commonsense_qa,
    "strategyqa": format_strategyqa,
    "arc": format_arc,
    "openbookqa": format_openbookqa,
}


def load_source(name: str, split: str = "train", local_dir: str | Path | None = None) -> list[dict]:
    """Rows of one hub source (every config of the table), or of a local copy: a ``save_to_disk`` folder,
    or files ``datasets.load_dataset`` reads (per config, ``local_dir/<config>`` when it exists)."""
    import datasets

    spec = SOURCES[name]
    rows: list[dict] = []
    for config in spec.configs:
        if local_dir is not None:
            path = (
                Path(local_dir) / config
                if config and (Path(local_dir) / config).is_dir()
                else Path(local_dir)
            )
            if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
                ds = datasets.load_from_disk(str(path))
                ds = ds[split] if isinstance(ds, datasets.DatasetDict) else ds
            else:
                ds = datasets.load_dataset(str(path), split=split)
        else:
            ds = datasets.load_dataset(spec.hub_id, config, split=split, revision=spec.revision)
        rows.extend(dict(r) for r in ds)
    return rows


def format_rows(name: str, rows: list[dict]) -> list[dict]:
    fmt = FORMATTERS[name]
    return [ex for i, r in enumerate(rows) if (ex := fmt(r, i)) is not None]


# ---- the mixture --------------------------------------------------------------------------------


def check_weights(weights: dict) -> dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"fre_data.weights must map sources to shares, got {weights!r}")
    known = (*SOURCES, GENERATED)
    out = {}
    for k, v in weights.items():
        if k not in known:
            raise ValueError(f"fre_data.weights: unknown source {k!r}; choose from {', '.join(known)}")
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"fre_data.weights.{k} must be a number >= 0, got {v!r}")
        out[k] = float(v)
    if not sum(out.values()) > 0:
        raise ValueError("fre_data.weights: at least one share must be > 0")
    return out


def quotas(weights: dict[str, float], n: int) -> dict[str, int]:
    """Largest-remainder split of ``n`` by the weights."""
    total = sum(weights.values())
    raw = {k: n * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: -(raw[k] - out[k]))[: n - sum(out.values())]:
        out[k] += 1
    return out


def mixture(
    pools: dict[str, list[dict]], weights: dict[str, float], n: int, seed: int = 0
) -> tuple[list[dict], dict]:
    """Sample each source's quota from its pool (no replacement), shuffle; report per source."""
    rng = random.Random(seed)
    weights = check_weights(weights)
    out, report = [], {}
    for name, q in quotas(weights, n).items():
        pool = pools.get(name, [])
        take = rng.sample(pool, min(q, len(pool)))
        out.extend(take)
        report[name] = {"weight": weights[name], "requested": q, "available": len(pool), "taken": len(take)}
    rng.shuffle(out)
    return out, report


def build_fre_data(recipe, out: str | Path, library=None, loader=load_source) -> dict:
    """Build the recipe's FRE mixture into ``out`` (``fre.jsonl`` + ``fre_dataset/``); return a summary.
    ``loader(name, split, local_dir)`` is injectable (tests pass rows in each dataset's schema)."""
    from datasets import Dataset

    cfg = recipe.fre_data
    weights = check_weights(cfg.weights)
    quota = quotas(weights, cfg.num_examples)
    pools = {}
    for name, w in weights.items():
        if w <= 0 or quota[name] == 0:
            continue
        if name == GENERATED:
            if library is None:
                library = load_library(recipe.data.library_dir)
                wanted = {DATASET_ALIASES.get(d, d) for d in recipe.data.datasets}
                actions = [a for a in library if a.dataset in wanted] or list(library)
            else:
                actions = list(library)

            pools[name] = generate_tasks(quota[name], actions=actions, seed=cfg.seed)
        else:
            pools[name] = format_rows(name, loader(name, cfg.split, cfg.local_dirs.get(name)))
    examples, report = mixture(pools, weights, cfg.num_examples, cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fre.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8"
    )
    if examples:
        Dataset.from_list(examples).save_to_disk(str(out / "fre_dataset"))
    summary = {
        "num_examples": len(examples),
        "requested": cfg.num_examples,
        "sources": report,
        "paths": {"jsonl": str(out / "fre.jsonl"), "dataset": str(out / "fre_dataset") if examples else None},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
