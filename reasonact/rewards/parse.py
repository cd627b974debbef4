"""Completion parsing: tags, the answer, and reasoning segments with their frame references.

Everything here works on arbitrary text and never raises: tags may be missing, unbalanced or
nested, frame numbers may be huge or reversed. Character spans always index the completion text
(the string the model wrote), so the inspector can highlight exactly what a detection matched.

Segments are the units the sub-action detector embeds:

- the reasoning is cut into *sentences* at ``. ! ? ; :`` followed by a space, and at line breaks
  (so a header like ``Frames 5-8:`` ends where its colon is);
- each sentence is cut into *clauses* at commas and at connectives (``and then``, ``then``,
  ``while``, ``before``, ``after``, ``and``), because one sentence often names two sub-actions
  ("bends the knees and swings both arms back") and a sentence embedding blurs them; pieces shorter
  than three words are merged back into their neighbour ("...the knees and hips" stays whole);
- a *frame reference* ("frames 5-8", "frame 3", "frames 5 to 8", "Frames 5–8:") applies to the
  clause that contains it and to every following clause until the next reference — this covers
  both the header style ("Frames 1-4: ... . ... . Frames 5-8: ...") and inline references — except
  that a concluding sentence ("Overall, ...", "So ...", "This sequence ...") starts without one:
  it is about the whole clip, not the last frames named.

The text sent to the encoder (``embed_text``) drops the frame references and any tags, which are
noise for a sentence embedding. Which segments are embedded is the Scorer's choice (by default the
clauses of a multi-clause sentence and every single-clause sentence).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TAGS = ("observation", "think", "answer")
MAX_CHARS = 50_000  # parse at most this much of a completion (256-1024 generated tokens are ~1-5k chars)
MAX_SEGMENTS = 64  # per completion: ~10x what a 150-word chain has; bounds the cost of garbage text
MAX_EMBED_CHARS = 300  # an embedded segment is cut here (MiniLM truncates at 256 tokens anyway)
MIN_CLAUSE_WORDS = 3

_FRAME_REF = re.compile(
    r"\b(?:(?:in|during|at|from|over|across|for|on)\s+)?(?:the\s+)?frames?\s*#?\s*(\d{1,7})"
    r"(?:\s*(?:-|–|—|to|through|until|and)\s*#?\s*(\d{1,7}))?\b",
    re.IGNORECASE,
)
# A concluding sentence is about the whole clip: it does not inherit the previous frame reference.
_CONCLUSION = re.compile(
    r"\W*(?:overall|in summary|to summari[sz]e|in conclusion|so|therefore|thus|hence|altogether|"
    r"this (?:is|sequence|pattern|order|matches|indicates|suggests|shows)|"
    r"the (?:sequence|order|pattern|whole|overall|answer|action is))\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?;:]+(?=\s|$)|\n+")
_CLAUSE_CUT = re.compile(r",\s*|\s+(?:and then|then|while|before|after|and)\s+", re.IGNORECASE)
_ANY_TAG = re.compile(r"</?\s*(?:observation|think|answer)\s*>", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{2,}")
_LEADING_CONNECTIVE = re.compile(
    r"^(?:(?:and|then|so|next|finally|afterwards|while|before|after)\b[\s,]*)+", re.IGNORECASE
)


def completion_text(completion) -> str:
    """The text of one completion: a plain string, or TRL's conversational form
    ``[{"role": "assistant", "content": "..."}]`` (content may be a list of ``{"type": "text"}``
    parts). Anything else becomes ``str(completion)``; ``None`` becomes ``""``."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content", ""))
    if isinstance(completion, list | tuple):
        msgs = [m for m in completion if isinstance(m, dict)]
        if msgs:
            # The last assistant turn is what was generated; fall back to the last message.
            assistant = [m for m in msgs if m.get("role") == "assistant"] or msgs
            return _content_text(assistant[-1].get("content", ""))
        return " ".join(completion_text(c) for c in completion)
    try:
        return str(completion)
    except Exception:  # noqa: BLE001 - a reward must not raise on odd objects
        return ""


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") if isinstance(p, dict) and isinstance(p.get("text"), str) else ""
            for p in content
        )
    return "" if content is None else str(content)


@dataclass(frozen=True)
class FrameRef:
    first: int  # 1-based sampled-frame numbers as written (not yet clipped to the clip)
    last: int
    start: int  # character span of the reference in the completion
    end: int


@dataclass
class Segment:
    start: int  # character span in the completion text
    end: int
    text: str
    embed_text: str  # what the encoder sees ("" -> not embedded)
    region: str  # "observation" | "think" | "free" (reasoning outside any tag)
    level: str  # "sentence" | "clause"
    sentence: int  # index of the sentence this segment belongs to
    frames: list[tuple[int, int]] = field(default_factory=list)  # frame ranges in scope (as written)
    own_ref: bool = False  # the segment itself contains a frame reference (else its frames are inherited)


@dataclass
class Parsed:
    text: str
    blocks: dict[str, tuple[int, int]]  # tag -> content span of its first complete block
    answer: str | None
    segments: list[Segment]
    frame_refs: list[FrameRef]

    def region_text(self, region: str) -> str:
        span = self.blocks.get(region)
        return self.text[span[0] : span[1]] if span else ""


def block_matches(text: str) -> dict[str, tuple[int, int, int, int]]:
    """tag -> (block start, block end, content start, content end) of its first complete block."""
    out = {}
    for tag in TAGS:
        m = re.search(rf"<\s*{tag}\s*>(.*?)<\s*/\s*{tag}\s*>", text, re.IGNORECASE | re.DOTALL)
        if m:
            out[tag] = (m.start(), m.end(), *m.span(1))
    return out


def find_blocks(text: str) -> dict[str, tuple[int, int]]:
    """Content span of the first ``<tag>...</tag>`` of each tag (case-insensitive, non-greedy)."""
    return {tag: (v[2], v[3]) for tag, v in block_matches(text).items()}


def frame_refs(text: str, offset: int = 0) -> list[FrameRef]:
    refs = []
    for m in _FRAME_REF.finditer(text):
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        refs.append(FrameRef(min(a, b), max(a, b), offset + m.start(), offset + m.end()))
    return refs


def clean_for_embedding(text: str) -> str:
    """Drop frame references and tags; trim connective punctuation; '' if no real word is left."""
    text = _ANY_TAG.sub(" ", text)
    text = _FRAME_REF.sub(" ", text)
    text = " ".join(text.split()).strip(" ,;:-–—()[]")
    text = _LEADING_CONNECTIVE.sub("", text)
    if not _WORD.search(text):
        return ""
    return text[:MAX_EMBED_CHARS]


def _spans(text: str, start: int, end: int, cut: re.Pattern) -> list[tuple[int, int]]:
    """Split text[start:end] at ``cut`` matches; return non-blank (start, end) spans, stripped."""
    out, pos = [], start
    for m in cut.finditer(text, start, end):
        out.append((pos, m.end() if cut is _SENTENCE_END else m.start()))
        pos = m.end()
    out.append((pos, end))
    stripped = []
    for a, b in out:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            stripped.append((a, b))
    return stripped


def _merge_short(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge clauses of fewer than MIN_CLAUSE_WORDS words into the previous (or next) clause."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        short = len(_WORD.findall(clean_for_embedding(text[a:b]))) < MIN_CLAUSE_WORDS
        if out and (
            short or len(_WORD.findall(clean_for_embedding(text[out[-1][0] : out[-1][1]]))) < MIN_CLAUSE_WORDS
        ):
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _regions(text: str, matches: dict[str, tuple[int, int, int, int]]) -> list[tuple[str, int, int]]:
    """Where reasoning lives: the observation and think blocks; without a think block, all text
    outside the observation and answer blocks (a model that forgot its tags still reasoned)."""
    regions = [(tag, matches[tag][2], matches[tag][3]) for tag in ("observation", "think") if tag in matches]
    if "think" not in matches:
        pos = 0
        for a, b, _, _ in sorted(v for k, v in matches.items() if k != "think"):
            if a > pos:
                regions.append(("free", pos, a))
            pos = max(pos, b)
        if pos < len(text):
            regions.append(("free", pos, len(text)))
    return regions


def parse(completion) -> Parsed:
    """Parse one completion (string or conversational form) into blocks, answer and segments."""
    text = completion_text(completion)[:MAX_CHARS]
    matches = block_matches(text)
    blocks = {tag: (v[2], v[3]) for tag, v in matches.items()}
    answer = None
    if "answer" in blocks:
        a, b = blocks["answer"]
        answer = _ANY_TAG.sub(" ", text[a:b]).strip()
    segments: list[Segment] = []
    refs_all: list[FrameRef] = []
    n_sentence = 0
    for region, r0, r1 in _regions(text, matches):
        scope: list[tuple[int, int]] = []  # the frame ranges the running text is about
        for s0, s1 in _spans(text, r0, r1, _SENTENCE_END):
            if len(segments) >= MAX_SEGMENTS:
                break
            if _CONCLUSION.match(text, s0, s1):
                scope = []
            clauses = _merge_short(text, _spans(text, s0, s1, _CLAUSE_CUT))
            sentence_frames: list[tuple[int, int]] = []
            clause_segs = []
            for c0, c1 in clauses:
                refs = frame_refs(text[c0:c1], c0)
                refs_all.extend(refs)
                if refs:
                    scope = [(r.first, r.last) for r in refs]
                frames = list(scope)
                sentence_frames.extend(f for f in frames if f not in sentence_frames)
                clause_segs.append(
                    Segment(
                        c0,
                        c1,
                        text[c0:c1],
                        clean_for_embedding(text[c0:c1]),
                        region,
                        "clause",
                        n_sentence,
                        frames,
                        bool(refs),
                    )
                )
            segments.append(
                Segment(
                    s0,
                    s1,
                    text[s0:s1],
                    clean_for_embedding(text[s0:s1]),
                    region,
                    "sentence",
                    n_sentence,
                    sentence_frames,
                    any(c.own_ref for c in clause_segs),
                )
            )
            # A one-clause sentence would embed the same text twice: keep only the sentence.
            if len(clause_segs) > 1:
                segments.extend(clause_segs[: max(0, MAX_SEGMENTS - len(segments))])
            n_sentence += 1
    return Parsed(text, blocks, answer, segments, refs_all)
