"""FRE data: each formatter on hand-written rows in its dataset's real schema, the hub loaders (with
``datasets.load_dataset`` replaced: nothing downloads), the mixture, and the generated tasks."""

import json

import pytest

from reasonact.config import load_config, parse_overrides
from reasonact.cot import reasoning as R
from reasonact.cot import reasoning_tasks as G
from reasonact.rewards.basic import format_ok
from reasonact.rewards.examples import mini_library


def chain(ex):
    return ex["messages"][1]["content"][0]["text"]


def question(ex):
    return ex["messages"][0]["content"][0]["text"]


def check(ex, answer):
    assert ex is not None
    assert [m["role"] for m in ex["messages"]] == ["user", "assistant"]
    assert format_ok(chain(ex)), chain(ex)
    assert chain(ex).endswith(f"<answer>{answer}</answer>")
    assert ex["answer"] == answer
    assert question(ex).endswith(G.HINT)
    json.loads(ex["meta"])
    return ex


# ---- rows in each dataset's own schema (hand-written, same fields and types) ----

GSM8K = {
    "question": "A baker makes 36 rolls and sells a third of them in the morning. In the afternoon she sells "
    "10 more. How many rolls are left?",
    "answer": "In the morning she sells 36/3 = <<36/3=12>>12 rolls.\nShe has 36-12 = <<36-12=24>>24 left, then "
    "sells 10: 24-10 = <<24-10=14>>14.\n#### 14",
}
MATH = {
    "problem": "What is $\\frac{1}{2}+\\frac{1}{3}$?",
    "level": "Level 1",
    "type": "Prealgebra",
    "solution": "The common denominator is 6, so $\\frac{3}{6}+\\frac{2}{6}=\\boxed{\\frac{5}{6}}$.",
}
LOGIQA = {
    "context": "Every member of the club plays chess. Some chess players also play go.",
    "query": "Which of the following must be true?",
    "options": [
        "Every go player is in the club.",
        "Some club members play go.",
        "Every club member plays chess.",
        "No chess player plays go.",
    ],
    "correct_option": 2,
}
RECLOR = {
    "context": "Plants in the north field grew taller than those in the south field. Only the north field "
    "was watered daily.",
    "question": "Which one of the following most strengthens the argument that daily watering caused the "
    "difference?",
    "answers": [
        "The fields have the same soil.",
        "The south field is larger.",
        "Birds visit the north field.",
        "The farmer prefers the north field.",
    ],
    "label": 0,
    "id_string": "train_17",
}
CSQA = {
    "id": "075e483d21c29a511267ef62bedc0461",
    "question": "Where would you put a plate after washing it?",
    "question_concept": "plate",
    "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["cupboard", "table", "floor", "oven", "garden"]},
    "answerKey": "A",
}
STRATEGYQA = {
    "qid": "4fd64bb6ce5b78ab20b6",
    "term": "Mount Everest",
    "description": "Earth's highest mountain above sea level",
    "question": "Could a person walk up Mount Everest in one afternoon?",
    "answer": False,
    "facts": [
        "Climbing Mount Everest takes weeks because of acclimatisation.",
        "An afternoon lasts a few hours.",
    ],
    "decomposition": [
        "How long does climbing Everest take?",
        "How long is an afternoon?",
        "Is #1 shorter than #2?",
    ],
}
ARC = {
    "id": "Mercury_7175875",
    "question": "Which property of a mineral can be found by scratching it?",
    "choices": {"text": ["luster", "hardness", "color", "mass"], "label": ["A", "B", "C", "D"]},
    "answerKey": "B",
}
ARC_NUMERIC = {
    "id": "NYSEDREGENTS_2015_4_3",
    "question": "Which object is a source of light?",
    "choices": {"text": ["moon", "mirror", "sun", "window"], "label": ["1", "2", "3", "4"]},
    "answerKey": "3",
}
OBQA = {
    "id": "7-980",
    "question_stem": "The sun is responsible for",
    "choices": {
        "text": [
            "puppies learning new tricks",
            "children growing up and getting old",
            "flowers wilting in a vase",
            "plants sprouting, blooming and wilting",
        ],
        "label": ["A", "B", "C", "D"],
    },
    "answerKey": "D",
    "fact1": "the sun is the source of energy for physical cycles on Earth",
    "humanScore": 1.0,
    "clarity": 2.0,
    "turkIdAnonymized": "b356d338b7",
}


def test_gsm8k():
    ex = check(R.format_gsm8k(GSM8K), "14")
    assert "<<" not in chain(ex) and "12 rolls" in chain(ex)  # calculator notes dropped, steps kept
    assert ex["source"] == "gsm8k"
    assert check(R.format_gsm8k({**GSM8K, "answer": "x\n#### 1,250"}), "1250")


def test_math_takes_the_last_boxed_with_nested_braces():
    ex = check(R.format_math(MATH), "\\frac{5}{6}")
    assert json.loads(ex["meta"]) == {"level": "Level 1", "type": "Prealgebra"}
    assert R.format_math({**MATH, "solution": "no box here"}) is None
    assert R.last_boxed("a \\boxed{1} then \\boxed{x^{2}+1}.") == "x^{2}+1"


def test_logiqa_index_or_letter():
    ex = check(R.format_logiqa(LOGIQA), "C")
    assert "Every member of the club" in question(ex) and "C. Every club member plays chess." in question(ex)
    assert R.format_logiqa({**LOGIQA, "correct_option": "c"})["answer"] == "C"  # the card declares a string


def test_reclor():
    ex = check(R.format_reclor(RECLOR), "A")
    assert ex["id"] == "train_17" and "D. The farmer prefers" in question(ex)
    assert R.format_reclor({**RECLOR, "label": "1"})["answer"] == "B"


def test_commonsense_qa():
    ex = check(R.format_commonsense_qa(CSQA), "A")
    assert "E. garden" in question(ex) and "plate" in chain(ex)
    assert R.format_commonsense_qa({**CSQA, "answerKey": ""}) is None  # the test split has no answers


def test_strategyqa_uses_the_facts():
    ex = check(R.format_strategyqa(STRATEGYQA), "no")
    assert "acclimatisation" in chain(ex)
    joined = {**STRATEGYQA, "facts": "\n".join(STRATEGYQA["facts"]), "answer": True}
    assert check(R.format_strategyqa(joined), "yes")


def test_arc_letter_and_numeric_labels():
    check(R.format_arc(ARC), "B")
    ex = check(R.format_arc(ARC_NUMERIC), "C")  # "3" of labels 1-4 -> the third option
    assert "C. sun" in question(ex)


def test_openbookqa_uses_the_fact():
    ex = check(R.format_openbookqa(OBQA), "D")
    assert "source of energy" in chain(ex)
    assert check(R.format_openbookqa({k: v for k, v in OBQA.items() if k != "fact1"}), "D")  # "main" config


def test_format_rows_skips_unusable_rows():
    rows = [ARC, {**ARC, "answerKey": "Z"}, ARC_NUMERIC]
    assert [e["answer"] for e in R.format_rows("arc", rows)] == ["B", "C"]


def test_load_source_calls_the_documented_hub_ids(monkeypatch):
    import datasets

    calls = []

    def fake(path, name=None, split=None, revision=None, **kw):
        calls.append((path, name, split, revision))
        return [{"config": name}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert R.load_source("arc") == [{"config": "ARC-Challenge"}, {"config": "ARC-Easy"}]
    assert calls == [
        ("allenai/ai2_arc", "ARC-Challenge", "train", None),
        ("allenai/ai2_arc", "ARC-Easy", "train", None),
    ]
    calls.clear()
    R.load_source("logiqa", split="validation")
    assert calls == [("lucasmccabe/logiqa", None, "validation", "refs/convert/parquet")]
    calls.clear()
    assert len(R.load_source("math")) == 7 and {c[0] for c in calls} == {"EleutherAI/hendrycks_math"}
    for name in R.SOURCES:
        assert name in R.FORMATTERS


def test_load_source_from_a_local_copy(tmp_path):
    from datasets import Dataset

    Dataset.from_list([GSM8K, GSM8K]).save_to_disk(str(tmp_path / "gsm"))
    rows = R.load_source("gsm8k", local_dir=tmp_path / "gsm")
    assert len(rows) == 2 and rows[0]["question"] == GSM8K["question"]


def test_quotas_and_mixture_follow_the_weights():
    assert R.quotas({"gsm8k": 0.5, "arc": 0.25, "math": 0.25}, 40) == {"gsm8k": 20, "arc": 10, "math": 10}
    assert sum(R.quotas({"gsm8k": 1, "arc": 1, "math": 1}, 10).values()) == 10
    pools = {name: [{"source": name, "i": i} for i in range(100)] for name in ("gsm8k", "arc", "math")}
    pools["math"] = pools["math"][:3]  # a small source gives what it has
    mix, report = R.mixture(pools, {"gsm8k": 2, "arc": 1, "math": 1}, 40, seed=0)
    counts = {n: sum(e["source"] == n for e in mix) for n in pools}
    assert counts == {"gsm8k": 20, "arc": 10, "math": 3}
    assert report["math"] == {"weight": 1.0, "requested": 10, "available": 3, "taken": 3}
    assert [e["source"] for e in mix] != sorted(e["source"] for e in mix)  # shuffled
    assert mix == R.mixture(pools, {"gsm8k": 2, "arc": 1, "math": 1}, 40, seed=0)[0]  # seeded
    with pytest.raises(ValueError, match="unknown source"):
        R.check_weights({"gsm8k": 1, "gsm9k": 1})
    with pytest.raises(ValueError, match=">= 0"):
        R.check_weights({"gsm8k": -1})


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return mini_library(tmp_path_factory.mktemp("lib"))


def test_generated_tasks_are_verifiable(lib):
    exs = G.generate_tasks(400, actions=list(lib), seed=1)
    kinds = {json.loads(e["meta"])["kind"] for e in exs}
    assert kinds == {"arithmetic", "phase_order", "next_sub_action", "compare_frames", "compare_fractions"}
    for e in exs:
        assert format_ok(chain(e)) and G.verify(e, lib), chain(e)
    # verify really checks: a wrong answer of each kind fails
    for kind in kinds:
        e = next(x for x in exs if json.loads(x["meta"])["kind"] == kind)
        assert not G.verify({**e, "answer": e["answer"] + "0"}, lib)
    assert G.generate_tasks(50, actions=list(lib), seed=1) == exs[:50]  # seeded
    assert G.generate_tasks(50, actions=list(lib), seed=2) != exs[:50]


def test_generated_arithmetic_shows_correct_steps():
    for e in G.generate_tasks(60, seed=0):  # no library: arithmetic and fractions only
        meta = json.loads(e["meta"])
        if meta["kind"] == "arithmetic":
            for step in G._steps_values(meta["expr"]):
                assert G._fmt(step) in chain(e)


def test_build_fre_data(tmp_path, lib):
    from datasets import load_from_disk

    recipe = load_config("tiny", parse_overrides(["fre_data.num_examples=12"]))
    recipe.fre_data.weights = {"gsm8k": 1.0, "arc": 1.0, "generated": 2.0}
    rows = {"gsm8k": [GSM8K], "arc": [ARC, ARC_NUMERIC, ARC, ARC_NUMERIC]}
    seen = []

    def loader(name, split, local_dir):
        seen.append((name, split, local_dir))
        return rows[name]

    summary = R.build_fre_data(recipe, tmp_path / "fre", library=lib, loader=loader)
    assert sorted(seen) == [("arc", "train", None), ("gsm8k", "train", None)]
    assert summary["sources"]["gsm8k"] == {"weight": 1.0, "requested": 3, "available": 1, "taken": 1}
    assert summary["sources"]["arc"]["taken"] == 3 and summary["sources"]["generated"]["taken"] == 6
    assert summary["num_examples"] == 10
    ds = load_from_disk(summary["paths"]["dataset"])
    assert len(ds) == 10 and set(ds.column_names) == {"messages", "source", "id", "answer", "meta"}
    lines = (tmp_path / "fre" / "fre.jsonl").read_text().splitlines()
    assert len(lines) == 10 and all(format_ok(chain(json.loads(ln))) for ln in lines)
    assert json.loads((tmp_path / "fre" / "summary.json").read_text()) == summary


def test_tiny_recipe_is_offline(tmp_path, lib, monkeypatch):
    import datasets

    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: pytest.fail("the tiny profile must not load from the hub")
    )
    recipe = load_config("tiny", parse_overrides(["fre_data.num_examples=20"]))
    summary = R.build_fre_data(recipe, tmp_path / "fre", library=lib)
    assert summary["num_examples"] == 20 and set(summary["sources"]) == {"generated"}
