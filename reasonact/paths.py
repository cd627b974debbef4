"""Run folders, JSON-lines files and derived seeds: every notebook and CLI stage reads from and writes to
``runs/<run>/<NN_stage>/``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

try:  # POSIX file locks; without them (Windows) the experiments run their jobs one at a time
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

from reasonact.config import REPO_ROOT

# The SynthAct renderer's version: bump when the same seed would render different clips. Generated data
# and the tiny perception base are keyed by it (``data/synthact.py``, ``vlm.base_key``).
GENERATOR_VERSION = "1"


def run_dir(run: str | Path | None, profile: str = "tiny") -> Path:
    """``None`` -> ``runs/<profile>``; a relative path is taken from the repository root."""
    path = Path(run) if run else Path("runs") / profile
    return path if path.is_absolute() else REPO_ROOT / path


# Each stage's folder in a run, named after its notebook. The training stages (in curriculum order) each
# save a PEFT adapter in ``<folder>/adapter``; a stage starts from the base with every earlier adapter merged.
FOLDERS = {
    "data": "00_data",
    "library": "01_subaction_library",
    "cot": "02_cot_generation",
    "fre": "03_fre",
    "vsft": "04_video_sft",
    "tgrpo": "05_tgrpo",
    "eval": "06_evaluation",
}
STAGES = {k: FOLDERS[k] for k in ("fre", "vsft", "tgrpo")}


def stage_dir(run: str | Path | None, stage: str, profile: str = "tiny") -> Path:
    """``runs/<run>/<folder of stage>`` (created); ``stage`` is a key of ``FOLDERS`` ("data", "fre"...)."""
    if stage not in FOLDERS:
        raise KeyError(f"unknown stage {stage!r}; choose from {', '.join(FOLDERS)}")
    path = run_dir(run, profile) / FOLDERS[stage]
    path.mkdir(parents=True, exist_ok=True)
    return path


def derived_seed(*parts) -> int:
    """A 31-bit seed from any parts (stable across processes and runs, unlike ``hash``)."""
    h = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % (2**31 - 1)


LOCK_DIR = REPO_ROOT / "runs" / ".locks"


@contextlib.contextmanager
def locked(target: str | Path):
    """Hold an exclusive lock named after ``target`` (a folder or file that several processes may create)
    for the block: one process makes it, the others wait and then find it made. The lock file lives in
    ``runs/.locks/``; where the OS has no file locks this is a no-op (``fcntl is None``)."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    key = hashlib.blake2b(str(Path(target).resolve()).encode(), digest_size=8).hexdigest()
    with open(LOCK_DIR / f"{key}.lock", "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def read_jsonl(path: str | Path, what: str, check: Callable[[dict, str], None] | None = None) -> list[dict]:
    """Rows of a JSON-lines file. A missing file or a bad line is an error naming the file (and line);
    ``check(row, "file:line")`` may raise for a row that parses but is not what the caller needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found (run the notebook or CLI command that writes it)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if check is not None:
            check(row, f"{path}:{n}")
        rows.append(row)
    return rows


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Rows as JSON lines, atomically (a temp file, then rename: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    tmp.replace(path)
    return path


def _clean(obj):
    """JSON-safe: numpy scalars -> Python, NaN/inf -> None (metrics.json must stay valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_metrics(directory: str | Path, metrics: dict, name: str = "metrics.json") -> Path:
    path = Path(directory) / name
    path.write_text(json.dumps(_clean(metrics), indent=2, sort_keys=True) + "\n")
    return path


def adapter_dir(run: str | Path | None, stage: str, profile: str = "tiny") -> Path:
    return run_dir(run, profile) / STAGES[stage] / "adapter"


def prior_adapters(run: str | Path | None, stage: str, profile: str = "tiny", skip=()) -> list[Path]:
    """The adapters of the stages before ``stage`` that exist in the run (``skip``: stages to leave out,
    e.g. ``("fre",)`` for the no-FRE ablation). A missing earlier stage is simply not merged."""
    names = list(STAGES)
    earlier = names[: names.index(stage)]
    dirs = [adapter_dir(run, s, profile) for s in earlier if s not in skip]
    return [d for d in dirs if (d / "adapter_config.json").is_file()]
