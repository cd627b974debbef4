"""Multi-process readiness of the SFT stages (issue 7, item 6).

- The accelerate configs in configs/accelerate/ parse with the installed accelerate and turn into the
  plugins we mean (DeepSpeed's "auto" batch / accumulation / clipping, FSDP with the original params).
- Under FSDP / ZeRO-3 launches the LoRA weights keep the base dtype (mixed dtypes break both).
- Two CPU processes (gloo) train FRE on the tiny model through ``accelerate launch``: both ranks end with
  the same adapter, rank 0 saves exactly that adapter, and the ranks split every step's examples with
  none seen twice and none skipped.
No GPU and no DeepSpeed here: the DeepSpeed / FSDP configs are checked as configuration only.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from reasonact.config import REPO_ROOT, load_config

CONFIGS = REPO_ROOT / "configs" / "accelerate"
ACCELERATE = Path(sys.executable).with_name("accelerate")


def launcher_env(config: Path) -> tuple[object, dict[str, str]]:
    """What ``accelerate launch --config_file config`` would put in each process's environment."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(config), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def test_accelerate_configs_are_valid():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"ddp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp.yaml", "cpu_gloo.yaml"} <= names
    options = {a.dest for a in launch_command_parser()._actions}
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config_from_file(str(path))  # rejects unknown top-level keys
        # nested keys become launcher options; an unknown one would be silently ignored
        nested = list(cfg.deepspeed_config) + [
            k if k.startswith("fsdp_") else f"fsdp_{k}" for k in cfg.fsdp_config
        ]
        assert set(nested) <= options, f"{path.name}: unknown keys {set(nested) - options}"

    args, _ = launcher_env(CONFIGS / "ddp.yaml")
    assert args.multi_gpu and args.mixed_precision == "bf16"
    args, _ = launcher_env(CONFIGS / "cpu_gloo.yaml")
    assert args.multi_gpu and args.num_processes == 2  # torchrun: one process per rank, even on a CPU

    for name, stage in (("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)):
        args, env = launcher_env(CONFIGS / name)
        with mock.patch.dict(os.environ, env):
            plugin = DeepSpeedPlugin()
            plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
        ds = plugin.deepspeed_config
        assert ds["zero_optimization"]["stage"] == stage
        # left to the Trainer: filled from the recipe's batch, accumulation and max_grad_norm
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            assert ds[key] == "auto", (name, key)
        assert ds["gradient_clipping"] == "auto"
        assert ds["bf16"] == {"enabled": True}
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)

    args, env = launcher_env(CONFIGS / "fsdp.yaml")
    assert args.use_fsdp
    # sync_module_states asks accelerate for a GPU at construction: not checkable on a CPU machine
    env = {**env, "FSDP_SYNC_MODULE_STATES": "false"} if not torch.cuda.is_available() else env
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 1 and plugin.use_orig_params is True
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)  # Trainer.save_model gathers the adapter
    for cls in plugin.transformer_cls_names_to_wrap:
        assert hasattr(modeling_qwen2_5_vl, cls), cls


def test_lora_keeps_base_dtype_under_sharded_launch(monkeypatch):
    from transformers import AutoModelForImageTextToText

    from reasonact.vlm import apply_lora, model_path

    recipe = load_config("tiny")
    src = model_path(recipe)

    def trainable_dtypes():
        model = AutoModelForImageTextToText.from_pretrained(src, dtype=torch.bfloat16)
        model = apply_lora(model, recipe.model.lora)
        return {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}

    for var in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(var, raising=False)
    plain = trainable_dtypes()
    assert any(d == torch.float32 for n, d in plain.items() if "lora_" in n)  # PEFT's default: fp32 LoRA
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert set(trainable_dtypes().values()) == {torch.bfloat16}
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert set(trainable_dtypes().values()) == {torch.bfloat16}
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")  # ZeRO-2 keeps whole weights: as usual
    assert trainable_dtypes() == plain


def fre_rows(n: int) -> list[dict]:
    """Text-only chat rows in the format of 02_cot_generation/fre/fre.jsonl."""
    rows = []
    for i in range(n):
        a, b = i + 2, 3 * i + 1
        q = f"What is {a} + {b}?\nAnswer as <think>reasoning</think><answer>answer</answer>."
        ans = f"<think>{a} + {b} = {a + b}.</think><answer>{a + b}</answer>"
        rows.append({"messages": [{"role": "user", "content": [{"type": "text", "text": q}]},
                                  {"role": "assistant", "content": [{"type": "text", "text": ans}]}]})  # fmt: skip
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_train_identical_adapters(tmp_path):
    from safetensors.torch import load_file

    world, batch, accum, steps = 2, 2, 2, 3
    run, probes = tmp_path / "run", tmp_path / "probes"
    fre = run / "02_cot_generation" / "fre" / "fre.jsonl"
    fre.parent.mkdir(parents=True)
    probes.mkdir()
    fre.write_text("".join(json.dumps(r) + "\n" for r in fre_rows(12)))
    cmd = [str(ACCELERATE), "launch", "--config_file", str(CONFIGS / "cpu_gloo.yaml"),
           "--num_processes", str(world), "--main_process_port", str(free_port()),
           str(REPO_ROOT / "tests" / "multiprocess_entry.py"),
           "train", "fre", "--profile", "tiny", "--run", str(run), "--json",
           "--set", f"fre.max_steps={steps}", "--set", f"fre.per_device_train_batch_size={batch}",
           "--set", f"fre.gradient_accumulation_steps={accum}", "--set", "fre.save_steps=100"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "MP_PROBE_DIR": str(probes)}  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count('"stage": "fre"') == 1  # rank 0 alone prints the metrics

    ranks = [torch.load(probes / f"rank{r}.pt") for r in range(world)]
    assert [(p["rank"], p["world_size"], p["backend"]) for p in ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]
    assert all(p["steps"] == steps for p in ranks)

    # identical adapters on both ranks, changed by training, and what rank 0 saved is that adapter
    end0, end1 = ranks[0]["end"], ranks[1]["end"]
    assert end0.keys() == end1.keys() and end0
    for k in end0:
        assert torch.equal(end0[k], end1[k]), f"ranks differ on {k}: {(end0[k] - end1[k]).abs().max()}"
    assert any(not torch.equal(end0[k], ranks[0]["start"][k]) for k in end0)
    saved = load_file(run / "03_fre" / "adapter" / "adapter_model.safetensors")
    assert saved.keys() == end0.keys()
    assert all(torch.equal(saved[k], end0[k]) for k in saved)

    # the examples: the data is sized for the world, every step consumes the next block of
    # batch x accumulation x world indices, split between the ranks, none twice and none skipped
    metrics = json.loads((run / "03_fre" / "metrics.json").read_text())
    per_step = batch * accum * world
    assert metrics["steps"] == steps and metrics["data"]["examples"] == steps * per_step
    for p in ranks:
        assert len(p["batches"]) == steps * accum and all(len(b) == batch for b in p["batches"])
    for step in range(steps):
        got = [i for p in ranks for b in p["batches"][step * accum : (step + 1) * accum] for i in b]
        assert sorted(got) == list(range(step * per_step, (step + 1) * per_step)), (step, got)


@pytest.mark.slow
def test_two_cpu_processes_run_tgrpo(tmp_path, tiny_model_dir):
    """``reasonact train tgrpo`` under ``accelerate launch`` with 2 gloo processes: each rank generates for
    whole prompt groups of its own clips, the ranks end with the same trained adapter, rank 0 saves it.
    From the random-init tiny model: its samples differ within a group, so the parity reward has a spread to
    learn from (from the committed base, the 8-token completions of each group earned the same reward: the
    adapter did not move)."""
    from safetensors.torch import load_file

    from reasonact.video import write_video
    from tests.conftest import moving_square
    from tests.test_tgrpo import JUMP_PHASES

    world, g = 2, 2
    run, probes = tmp_path / "run", tmp_path / "probes"
    probes.mkdir()
    lines = []
    for i in range(4):
        path = write_video(tmp_path / f"clip{i}.mp4", moving_square(num_frames=24, seed=i), fps=12)
        lines.append({"video": str(path), "label": "jump", "dataset": "synthact", "split": "train", "fps": 12.0, "num_frames": 24,
                      "duration_s": 2.0, "phases": JUMP_PHASES})  # fmt: skip
    manifest = tmp_path / "manifest_train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in lines))
    sets = {"tgrpo.manifest": manifest, "tgrpo.num_generations": g, "tgrpo.shuffled_generations": 1,
            "tgrpo.per_device_train_batch_size": 2, "tgrpo.steps_per_generation": 2, "tgrpo.max_steps": 2,
            "tgrpo.max_completion_length": 8, "tgrpo.learning_rate": 1e-2, "tgrpo.logging_steps": 1,
            "tgrpo.save_steps": 100, "tgrpo.eval_clips": 0, "model.name_or_path": tiny_model_dir}  # fmt: skip
    cmd = [str(ACCELERATE), "launch", "--config_file", str(CONFIGS / "cpu_gloo.yaml"),
           "--num_processes", str(world), "--main_process_port", str(free_port()),
           str(REPO_ROOT / "tests" / "multiprocess_entry.py"),
           "train", "tgrpo", "--profile", "tiny", "--run", str(run), "--json",
           *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "MP_PROBE_DIR": str(probes), "MP_PARITY_REWARD": "1"}  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert proc.stdout.count('"stage": "tgrpo"') == 1  # rank 0 alone prints the metrics

    ranks = [torch.load(probes / f"rank{r}.pt") for r in range(world)]
    assert [(p["rank"], p["world_size"], p["backend"]) for p in ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]
    assert all(p["steps"] == 2 for p in ranks)
    # one generation batch per rank (2 steps x 2 completions): whole prompt groups, other clips than the other rank's
    for p in ranks:
        assert len(p["batches"]) == 1 and len(p["batches"][0]) == 4
        rows = p["batches"][0]
        assert all(len(set(rows[i : i + g])) == 1 for i in range(0, len(rows), g)), rows
    assert not set(ranks[0]["batches"][0]) & set(ranks[1]["batches"][0])

    end0, end1 = ranks[0]["end"], ranks[1]["end"]
    assert end0.keys() == end1.keys() and end0
    for k in end0:
        assert torch.equal(end0[k], end1[k]), f"ranks differ on {k}: {(end0[k] - end1[k]).abs().max()}"
    assert any(not torch.equal(end0[k], ranks[0]["start"][k]) for k in end0), "the adapter was not trained"
    saved = load_file(run / "05_tgrpo" / "adapter" / "adapter_model.safetensors")
    assert saved.keys() == end0.keys() and all(torch.equal(saved[k], end0[k]) for k in saved)
