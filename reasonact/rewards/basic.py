"""Format and accuracy: the two rule-based rewards (DeepSeek-R1 / Video-R1 style).

**format** (range {0, 1}, no partial credit): 1 when the whole completion is
``<think>…</think><answer>…</answer>`` (only whitespace around and between the blocks), both
blocks non-empty and no tag of ours inside another block; the process-aware format
(``format_pa``) requires ``<observation>…</observation>`` first. No partial credit on purpose: a
half-right format still breaks answer extraction, and GRPO's group normalisation already turns
1/0 into a graded advantage.

**accuracy** (range {0, 1}): the ``<answer>`` block (no block -> 0) against the label, after
normalising both: case, underscores/hyphens/CamelCase (``normalize_label``), articles and
lead-ins ("The answer is", "the person is ..."), trailing punctuation. Then, in this order:

1. with ``options`` (multiple choice), an option letter ("B", "(B)", "B.", "Option B", "B. kick")
   is replaced by that option's text (a label that is itself a letter is compared as a letter);
2. equal normalised forms, or equal with the spaces removed (``ApplyEyeMakeup`` = "apply eye make up");
3. both resolve to the same library entry of the label's dataset (aliases and synonyms, e.g.
   "jumping" -> jump; SynthAct resolves to HMDB51);
4. a longer answer counts if it names exactly one class of the dataset and that is the label
   ("He is clearly jumping." -> jump); an answer naming two classes ("jump or kick") is wrong,
   so listing classes cannot be rewarded.
"""

from __future__ import annotations

import re

from reasonact.library import DATASET_ALIASES, Library, normalize_label

_FMT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_FMT_PA = re.compile(
    r"\s*<observation>(.*?)</observation>\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL
)
_TAG = re.compile(r"</?\s*(?:observation|think|answer)\s*>", re.IGNORECASE)
_LEAD_IN = re.compile(
    r"^(?:(?:the\s+)?(?:final\s+)?(?:answer|action|activity|class|label|prediction|option)\s*(?:is|:|=|-)?\s*"
    r"|(?:so|thus|therefore|hence)\b,?\s*|(?:the\s+)?(?:person|man|woman|figure|subject)\s+is\s+"
    r"|(?:he|she|they|it|this)\s+(?:is|are)\s+|(?:performing|doing)\s+|(?:a|an|the)\s+)+",
    re.IGNORECASE,
)
_LETTER = re.compile(
    r"^(?:option\s*)?(?:\(([A-Za-z])\)|([A-Z])(?=[.):]|\s*$)|([a-z])(?=[.)]|$))[.):]?\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)


def format_ok(text: str, process_aware: bool = False) -> bool:
    m = (_FMT_PA if process_aware else _FMT).fullmatch(text)
    return bool(m) and all(g.strip() and not _TAG.search(g) for g in m.groups())


def format_rate(texts: list[str], process_aware: bool = False) -> float:
    """The share of ``texts`` that follow the format (``format_ok``); 0.0 for none."""
    return sum(format_ok(t, process_aware) for t in texts) / len(texts) if texts else 0.0


def clean_answer(answer: str) -> str:
    """Strip tags, quotes, lead-ins, articles and trailing punctuation; keep the words."""
    a = _TAG.sub(" ", str(answer))
    a = " ".join(a.split()).strip(" \t\"'`*.,;:!?")
    for _ in range(3):  # lead-ins can stack: "The answer is: the person is jumping"
        b = _LEAD_IN.sub("", a).strip(" \"'`*.,;:!?")
        if b == a:
            break
        a = b
    return a


def _squash(s: str) -> str:
    return normalize_label(s).replace(" ", "")


def _option_text(option: str, index: int) -> str:
    """ "B. kick" / "(B) kick" / "B: kick" at position 1 -> "kick"; "kick" -> "kick"."""
    m = _LETTER.match(option.strip())
    letter = next((g for g in (m.groups()[:3] if m else ()) if g), None)
    if m and letter and letter.upper() == chr(65 + index) and m.group(4).strip():
        return m.group(4).strip()
    return option.strip()


def resolve_option(answer: str, options: list[str] | None) -> tuple[str | None, str]:
    """(letter or None, text) of an answer given the options; the text is the option's when a
    letter is recognised."""
    if not options:
        return None, answer
    m = _LETTER.match(answer.strip())
    letter = next((g for g in (m.groups()[:3] if m else ()) if g), None)
    if letter:
        i = ord(letter.upper()) - 65
        if 0 <= i < len(options):
            return letter.upper(), _option_text(options[i], i)
    return None, answer


class ActionMentions:
    """Find the classes of one dataset named in free text (labels, aliases, CamelCase squashed),
    longest match first so "jumping jacks" is not read as "jumping"."""

    def __init__(self, lib: Library, dataset: str | None):
        ds = DATASET_ALIASES.get(dataset, dataset) if dataset else None
        names: dict[str, str] = {}
        for a in lib:
            if ds is not None and a.dataset != ds:
                continue
            for n in (a.label, *a.aliases):
                norm = normalize_label(n)
                for form in {norm, norm.replace(" ", "")}:
                    if len(form) >= 2:
                        names.setdefault(form, a.key)
        self.keys = names
        alts = sorted(names, key=len, reverse=True)
        self.pattern = re.compile(r"\b(?:" + "|".join(re.escape(x) for x in alts) + r")\b") if alts else None

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """(action key, start, end) of each mention; positions index ``text``."""
        if self.pattern is None or not text:
            return []
        # Same-length normalisation keeps positions valid: lower case, separators -> spaces.
        norm = re.sub(r"[_\-/]", " ", text.lower())
        if len(norm) != len(text):  # some characters change length when lower-cased
            return []
        return [(self.keys[m.group(0)], m.start(), m.end()) for m in self.pattern.finditer(norm)]


_MENTIONS: dict[tuple[int, str | None], tuple[Library, ActionMentions]] = {}


def mentions_for(lib: Library, dataset: str | None) -> ActionMentions:
    """Cached per (library object, dataset); the library is kept alive so its id stays unique."""
    key = (id(lib), dataset)
    if key not in _MENTIONS:
        if len(_MENTIONS) > 32:
            _MENTIONS.clear()
        _MENTIONS[key] = (lib, ActionMentions(lib, dataset))
    return _MENTIONS[key][1]


def answer_action(answer: str | None, dataset: str | None, lib: Library | None) -> str | None:
    """The library key the answer names (one class only), or None."""
    if not answer or lib is None:
        return None
    a = clean_answer(answer)
    try:
        return lib.resolve(a, dataset).key
    except (KeyError, ValueError, TypeError):
        pass
    found = {k for k, _, _ in mentions_for(lib, dataset).find(a)}
    return found.pop() if len(found) == 1 else None


def is_correct(answer: str | None, label, dataset=None, options=None, lib: Library | None = None) -> bool:
    """Accuracy rule of the module docstring; never raises."""
    if answer is None or label is None:
        return False
    label = str(label)
    letter, text = resolve_option(clean_answer(answer) or str(answer), options)
    if options and re.fullmatch(r"[A-Za-z]", label.strip()):
        i = ord(label.strip().upper()) - 65
        if letter is not None:
            return letter == label.strip().upper()
        if not 0 <= i < len(options):
            return False
        label = _option_text(options[i], i)
    a, lbl = clean_answer(text), clean_answer(label) or label
    if not a:
        return False
    if normalize_label(a) == normalize_label(lbl) or _squash(a) == _squash(lbl):
        return True
    if lib is None:
        return False
    try:
        target = lib.resolve(label, dataset).key
    except (KeyError, ValueError, TypeError):
        return False
    return answer_action(a, dataset, lib) == target
