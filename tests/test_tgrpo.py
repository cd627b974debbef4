"""T-GRPO (reasonact/train/tgrpo.py): the video reaches every forward, the bonus is decided per prompt group,
process-aware advantages go to the right tokens, resume continues the step count.

Tiny random-init model, 2 generations, 8 new tokens: the real code path, small.
"""

import json

import numpy as np
import pytest
import torch

from reasonact.config import load_config
from reasonact.vlm import vision_token_ids
from tests.conftest import moving_square

JUMP_PHASES = [
    {"name": "crouch", "start_s": 0.0, "end_s": 0.5, "sub_actions": ["knee_flexion", "arm_backswing"]},
    {"name": "takeoff", "start_s": 0.5, "end_s": 1.0, "sub_actions": ["leg_extension", "arm_upswing"]},
    {"name": "flight", "start_s": 1.0, "end_s": 1.5, "sub_actions": ["airborne", "knee_tuck"]},
    {"name": "landing", "start_s": 1.5, "end_s": 2.0, "sub_actions": ["foot_contact", "landing_absorption"]},
]
GOOD_OBS = (
    "<observation>In frames 1-4 the person bends the knees into a crouch and swings both arms back behind "
    "the hips. In frames 5-8 the person straightens the legs explosively and swings the arms up. In frames "
    "9-12 the person is airborne with the knees tucked. In frames 13-16 the feet touch the ground and the "
    "knees bend to absorb the landing.</observation>"
)
BAD_OBS = "<observation>A person is in the picture.</observation>"
THINK = "<think>Crouch, then takeoff, then flight, then landing: the order of a jump.</think>"


@pytest.fixture
def manifest(tmp_path):
    """Two 'jump' clips (different content) and their manifest, in SynthAct's columns."""
    from reasonact.video import write_video

    lines = []
    for i in range(2):
        path = write_video(
            tmp_path / f"clip{i}.mp4", moving_square(num_frames=24, seed=i)[:, :, :: 1 + i], fps=12
        )
        lines.append({"video": str(path), "label": "jump", "dataset": "synthact", "split": "train",
                      "fps": 12.0, "num_frames": 24, "duration_s": 2.0, "phases": JUMP_PHASES})  # fmt: skip
    path = tmp_path / "manifest_train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def tiny_recipe(tiny_model_dir, manifest, **tgrpo):
    over = {"model.name_or_path": str(tiny_model_dir), "tgrpo.manifest": str(manifest),
            "tgrpo.num_generations": 2, "tgrpo.shuffled_generations": 1, "tgrpo.per_device_train_batch_size": 2,
            "tgrpo.steps_per_generation": 2, "tgrpo.max_completion_length": 8, "tgrpo.max_steps": 2,
            "tgrpo.logging_steps": 1, "tgrpo.save_steps": 100, "tgrpo.eval_clips": 0}  # fmt: skip
    return load_config("tiny", {**over, **{f"tgrpo.{k}": v for k, v in tgrpo.items()}})


def make_trainer(recipe, tmp_path, **overrides):
    from reasonact.train.tgrpo_stage import build_trainer

    return build_trainer(recipe, tmp_path / "ckpt", run=tmp_path / "run", **overrides)[0]


def test_every_forward_gets_the_video(tiny_model_dir, manifest, tmp_path):
    """Generation, old-policy, reference and loss forwards all receive the video tensors (steps_per_generation
    2 with 1 accumulation step: the second update is off-policy, so old log-probs are computed too)."""
    trainer = make_trainer(tiny_recipe(tiny_model_dir, manifest), tmp_path)
    calls = []

    def hook(module, args, kwargs):
        calls.append({"grad": torch.is_grad_enabled(), "logps": kwargs.get("use_cache") is False,
                      "rows": kwargs["input_ids"].shape[0], "keys": {k for k, v in kwargs.items() if v is not None},
                      "grid": kwargs.get("video_grid_thw"), "pixels": kwargs.get("pixel_values_videos")})  # fmt: skip

    base = trainer.model.get_base_model()
    handle = base.register_forward_pre_hook(hook, with_kwargs=True)
    generate, generations = trainer.model.generate, []
    trainer.model.generate = lambda **kw: generations.append(kw) or generate(**kw)
    bonus_calls = []
    contrast = trainer.reward_funcs[1]
    trainer.reward_funcs[1] = lambda **kw: bonus_calls.append(kw) or contrast(**kw)
    trainer.train()
    handle.remove()

    vision = set(vision_token_ids(trainer.processing_class))
    assert vision <= set(trainer.generation_config.suppress_tokens)  # never sampled
    assert generations  # one generate call per round
    for kw in generations:  # top-p by NucleusWarper at the recipe's settings; transformers' warpers off
        (nucleus,) = kw["logits_processor"]
        assert (nucleus.temperature, nucleus.top_p) == (
            trainer.temperature,
            trainer.top_p,
        ) and nucleus.top_p < 1
        config = kw["generation_config"]
        assert (config.temperature, config.top_p, config.top_k) == (1.0, 1.0, 0)
        assert vision <= set(config.suppress_tokens)
    loss_calls = [c for c in calls if c["grad"]]
    nograd_logps = [c for c in calls if c["logps"] and not c["grad"]]
    assert len(loss_calls) == 2  # one per optimizer step
    assert len(nograd_logps) >= 2  # old policy + reference (adapter disabled)
    # generation: one generate call per round, 2 prompts x G 2 ordered + 2 x 1 on shuffled frames; the clips
    # reach its prefill encoded (mm_encoder_outputs), the later steps use the cache
    assert any("mm_encoder_outputs" in c["keys"] and c["rows"] == 6 for c in calls)
    for c in calls:
        if c["pixels"] is None:
            assert not c["logps"] and c["rows"] == 6  # a generation step
            continue
        assert {"pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids"} <= c[
            "keys"
        ]
        assert len(c["grid"]) == c["rows"]  # one clip per sequence
        assert c["pixels"].shape[0] == int(c["grid"].prod(-1).sum())
    assert all(c["logps"] and c["pixels"] is not None for c in loss_calls)
    # the shuffled-frame group reached the bonus: one completion per prompt group, the same on each row
    kw = bonus_calls[0]
    assert [len(s) for s in kw["shuffled_completions"]] == [1] * len(kw["completions"])
    assert kw["group_id"] == [i // 2 for i in range(len(kw["completions"]))]


def test_cpu_log_probs_are_trls_fused_log_probs(tiny_model_dir):
    """On a CPU the log-prob forwards use full logits (token_logps): the same log-probabilities and entropies
    as TRL's fused LM head at the sampling temperature, 0 on masked tokens."""
    from transformers import AutoModelForImageTextToText
    from trl.trainer.utils import add_fused_lm_head

    from reasonact.vlm import token_logps

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    ids = torch.randint(10, 4000, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[2, :3] = 0  # left padding
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :5] = -100  # the prompt
    fused = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    logps, entropy = token_logps(model(input_ids=ids, attention_mask=mask).logits, labels, 0.7, entropy=True)
    assert logps.shape == fused.log_probs.shape == (3, 11)
    assert torch.allclose(logps, fused.log_probs, atol=1e-5)
    assert torch.allclose(entropy, fused.entropy, atol=1e-5)
    assert (logps[:, :4] == 0).all() and (logps[:, 4:] < 0).all()


def test_loss_changes_when_only_the_video_changes(tiny_model_dir, manifest, tmp_path):
    trainer = make_trainer(tiny_recipe(tiny_model_dir, manifest), tmp_path)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = trainer._prepare_inputs(batch)
    other = dict(inputs)  # the same completions and advantages; each clip replaced by a different clip
    other["pixel_values_videos"] = [torch.flip(p, dims=[0]) + 0.5 for p in inputs["pixel_values_videos"]]
    with torch.no_grad():
        same = trainer._compute_loss(trainer.model, inputs).item()
        again = trainer._compute_loss(trainer.model, inputs).item()
        changed = trainer._compute_loss(trainer.model, other).item()
    assert same == pytest.approx(again, abs=1e-7)
    assert abs(changed - same) > 1e-5


def test_video_rows_survive_trl_shuffle_and_split():
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    from reasonact.train.tgrpo import per_row

    grid = torch.tensor([[2, 2, 2], [4, 2, 2], [2, 2, 4], [2, 4, 2]])
    rows = grid.prod(-1)
    pixels = torch.cat([torch.full((int(n), 3), float(i)) for i, n in enumerate(rows)])
    video = {"pixel_values_videos": pixels, "video_grid_thw": grid, "second_per_grid_ts": torch.arange(4.0)}
    batch = {"prompt_ids": torch.arange(4)[:, None], **per_row(video)}
    for chunk in split_tensor_dict(shuffle_sequence_dict(batch), 2):
        ids = chunk["prompt_ids"][:, 0].tolist()
        pix, g = torch.cat(chunk["pixel_values_videos"]), torch.cat(chunk["video_grid_thw"])
        assert torch.equal(g, grid[ids]) and torch.cat(chunk["second_per_grid_ts"]).tolist() == ids
        assert pix[:, 0].tolist() == [float(i) for i in ids for _ in range(int(rows[i]))]


def test_shuffled_frame_bonus_rule():
    from reasonact.train.tgrpo import shuffled_frame_bonus

    # ordered 3/4 correct, shuffled 1/4: each correct ordered completion gets the bonus
    assert shuffled_frame_bonus([1, 1, 0, 1], [0, 1, 0, 0]) == [0.3, 0.3, 0.0, 0.3]
    # equal accuracies: the paper's strict rule (mu = 1) pays nothing; mu = 0.8 (Video-R1's code) pays
    assert shuffled_frame_bonus([1, 0], [1, 0]) == [0.0, 0.0]
    assert shuffled_frame_bonus([1, 1], [1, 1], mu=0.8) == [0.3, 0.3]
    assert shuffled_frame_bonus([True, False], [False, False], bonus=1.0) == [1.0, 0.0]
    # no shuffled completions: no bonus; everything wrong: nothing to reward
    assert shuffled_frame_bonus([1, 1], []) == [0.0, 0.0]
    assert shuffled_frame_bonus([0, 0], [0, 0]) == [0.0, 0.0]
    assert shuffled_frame_bonus([], [1]) == []


def test_bonus_is_decided_per_prompt_group():
    """Batch of two prompts: group A (ordered 3/4 correct, shuffled 0/2) earns the bonus on its correct
    completions; group B (ordered 1/4, shuffled 2/2) earns nothing. Pooled over the batch, ordered 4/8
    would tie shuffled 2/4 and nobody would get a bonus: the comparison must be per group."""
    from reasonact.train.tgrpo import contrast_reward

    right, wrong = "<think>t</think><answer>jump</answer>", "<think>t</think><answer>wave</answer>"
    ordered = [right, right, right, wrong, right, wrong, wrong, wrong]
    shuffled = {0: [wrong, wrong], 1: [right, right]}
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    logged = {}
    out = contrast_reward(mu=1.0, bonus=0.3)(
        completions=ordered, group_id=groups, shuffled_completions=[shuffled[g] for g in groups],
        label=["jump"] * 8, dataset=["synthact"] * 8, log_metric=lambda k, v: logged.__setitem__(k, v),
    )  # fmt: skip
    assert out == [0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert logged["tgrpo/bonus_group_share"] == 0.5
    assert logged["tgrpo/ordered_accuracy"] == 0.5 and logged["tgrpo/shuffled_accuracy"] == 0.5
    assert logged["tgrpo/bonus_mean"] == pytest.approx(0.9 / 8)
    # without the shuffled group (a plain GRPO batch) the bonus is 0 everywhere
    assert contrast_reward()(completions=ordered, label=["jump"] * 8) == [0.0] * 8
    # a tie (p = p~) earns nothing with the paper's strict rule; Video-R1's mu 0.8 pays it
    tie = dict(completions=[right, wrong], group_id=[0, 0], shuffled_completions=[[right, wrong]] * 2,
               label=["jump"] * 2, dataset=["synthact"] * 2)  # fmt: skip
    assert contrast_reward(mu=1.0)(**tie) == [0.0, 0.0]
    assert contrast_reward(mu=0.8)(**tie) == [0.3, 0.0]


def test_observation_mask_marks_the_observation_block(tiny_model_dir):
    from transformers import AutoProcessor

    from reasonact.train.tgrpo import observation_mask

    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    text = BAD_OBS + THINK + "<answer>jump</answer>"
    ids = tok.encode(text) + [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    mask = observation_mask(tok, torch.tensor([ids]), torch.tensor([[1] * (len(ids) - 1) + [0]]))[0]
    inside = tok.decode([t for t, m in zip(ids, mask.tolist()) if m])
    outside = tok.decode([t for t, m in zip(ids[:-1], mask.tolist()) if not m], skip_special_tokens=True)
    assert inside == BAD_OBS and outside == THINK + "<answer>jump</answer>"


def test_process_aware_advantages_per_span(tiny_model_dir, manifest, tmp_path):
    """Completion 1 sees well (good observation) but answers wrong; completion 2 sees nothing but answers
    right. Its observation tokens must get the perception advantage (+ for 1, - for 2), every other token
    the reasoning advantage (- for 1, + for 2)."""
    recipe = tiny_recipe(tiny_model_dir, manifest, process_aware=True, shuffled_generations=0)
    trainer = make_trainer(recipe, tmp_path)
    tok = trainer.processing_class.tokenizer
    texts = [GOOD_OBS + THINK + "<answer>wave</answer>", BAD_OBS + THINK + "<answer>jump</answer>"]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    fixed = [tok.encode(t) + [eos] for t in texts]
    trainer._generate_single_turn = lambda prompt_ids, *a: (
        [fixed[i % 2] for i in range(len(prompt_ids))],
        None,
    )
    trainer.model.train()
    rows = trainer.train_dataset[:2]
    inputs = [{k: rows[k][i] for k in rows} for i in (0, 0, 1, 1)]  # 2 prompts x G = 2, as TRL's sampler
    out = trainer._generate_and_score_completions(inputs)

    from reasonact.rewards import process_rewards
    from reasonact.train.tgrpo import observation_mask

    pr = process_rewards(None, texts, label=["jump"] * 2, dataset=["synthact"] * 2, phases=[JUMP_PHASES] * 2,
                         duration_s=[2.0] * 2)  # fmt: skip
    assert pr["perception"][0] > pr["perception"][1] and pr["reasoning"][0] < pr["reasoning"][1]
    adv, obs = out["advantages"], observation_mask(tok, out["completion_ids"], out["completion_mask"])
    assert adv.shape == out["completion_ids"].shape
    for row in range(4):
        sign = 1.0 if row % 2 == 0 else -1.0
        valid = out["completion_mask"][row].bool()
        assert obs[row].any() and (~obs[row] & valid).any()
        assert torch.allclose(adv[row][obs[row]], torch.tensor(sign * 0.7071), atol=1e-3)
        assert torch.allclose(adv[row][~obs[row] & valid], torch.tensor(-sign * 0.7071), atol=1e-3)


def test_vllm_is_refused_at_start_up(tiny_model_dir, manifest, tmp_path):
    from reasonact.train.tgrpo import VideoGRPOTrainer
    from reasonact.train.tgrpo_stage import grpo_config, train_tgrpo

    recipe = tiny_recipe(tiny_model_dir, manifest)
    trainer = make_trainer(recipe, tmp_path)
    with pytest.raises(ValueError, match="without the video"):  # the trainer itself, for direct users
        VideoGRPOTrainer(model=trainer.model, reward_funcs=trainer.reward_funcs, processing_class=trainer.processing_class,
                         args=grpo_config(recipe, tmp_path / "v", use_vllm=True), train_dataset=trainer.train_dataset)  # fmt: skip
    with pytest.raises(ValueError, match=r"tiny\.yaml.*use_vllm"):  # the stage entry, before loading anything
        train_tgrpo(tiny_recipe(tiny_model_dir, manifest, use_vllm=True), run=tmp_path / "run")


def test_missing_video_error_names_the_manifest(tmp_path, tiny_model_dir):
    from reasonact.train.tgrpo_stage import tgrpo_rows

    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"video": "nope.mp4", "label": "jump", "dataset": "synthact", "split": "train"}) + "\n"
    )
    with pytest.raises(FileNotFoundError, match=r"m\.jsonl.*nope\.mp4"):
        tgrpo_rows(tiny_recipe(tiny_model_dir, path))


def test_resume_continues_from_the_checkpoint(tiny_model_dir, manifest, tmp_path):
    from transformers import TrainerCallback

    from reasonact.train.tgrpo_stage import train_tgrpo

    # The random-init model's 8-token completions all get the same reward (zero advantages, no update):
    # TRL's entropy bonus gives a gradient anyway, so the restored adapter differs from a fresh one.
    run = tmp_path / "run"
    first = train_tgrpo(
        tiny_recipe(tiny_model_dir, manifest, max_steps=2, save_steps=2), run=run, entropy_coef=0.1
    )
    assert first["steps"] == 2 and (run / "05_tgrpo" / "adapter" / "adapter_config.json").is_file()
    from safetensors.torch import load_file

    saved = load_file(run / "05_tgrpo" / "adapter" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)  # trained, not the zero init
    seen = {}

    class Grab(TrainerCallback):  # LoRA weights when the resumed run starts its first step
        def on_step_begin(self, args, state, control, model=None, **kw):
            if "step" not in seen:
                seen["step"] = state.global_step
                seen["w"] = {
                    k: v.detach().clone()
                    for k, v in model.named_parameters()
                    if "lora_" in k and ".default." in k
                }

    recipe = tiny_recipe(tiny_model_dir, manifest, max_steps=3, save_steps=2)
    second = train_tgrpo(recipe, run=run, callbacks=[Grab()], entropy_coef=0.1)
    assert second["resumed_from"].endswith("checkpoint-2") and second["steps"] == 3 and seen["step"] == 2
    assert [c["step"] for c in second["curve"] if "loss" in c] == [1, 2, 3]  # history restored, then step 3
    assert seen["w"]
    for name, w in seen["w"].items():  # the adapter restored from the checkpoint, not a fresh one
        key = name.replace(".default", "")
        assert torch.equal(w, saved[key]), name
    metrics = json.loads((run / "05_tgrpo" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "rewards/total/mean" in metrics["last_log"]


def test_qlora_trains(tiny_model_dir, manifest, tmp_path):
    """4-bit nf4 base (bitsandbytes works on the CPU) + LoRA: two T-GRPO steps run and save an adapter."""
    from reasonact.train.tgrpo_stage import train_tgrpo

    recipe = load_config("tiny", {"model.load_in_4bit": True})  # the tiny LoRA settings, 4-bit base
    over = tiny_recipe(tiny_model_dir, manifest)
    recipe.model.name_or_path, recipe.tgrpo = over.model.name_or_path, over.tgrpo
    from transformers import TrainerCallback

    seen = {}

    class Check(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            seen["layers"] = {type(mod).__name__ for mod in model.modules()}

    m = train_tgrpo(recipe, run=tmp_path / "run", callbacks=[Check()])
    assert "Linear4bit" in seen["layers"]
    assert m["steps"] == 2 and (tmp_path / "run" / "05_tgrpo" / "adapter" / "adapter_config.json").is_file()


def test_recipe_embedding_model_reaches_the_rewards(tiny_model_dir, manifest, tmp_path, monkeypatch):
    """``data.embedding_model`` picks the Scorer the T-GRPO rewards use (default: the module's MiniLM)."""
    import reasonact.train.tgrpo_stage as tgrpo_stage
    from reasonact.rewards import default_scorer

    seen = []
    real = tgrpo_stage.reward_setup
    monkeypatch.setattr(
        tgrpo_stage, "reward_setup", lambda cfg, scorer=None: seen.append(scorer) or real(cfg, scorer)
    )
    recipe = tiny_recipe(tiny_model_dir, manifest)
    make_trainer(recipe, tmp_path / "a")
    recipe.data.embedding_model = "minilm-static"
    make_trainer(recipe, tmp_path / "b")
    assert seen[0] is default_scorer()
    assert seen[1].model == "minilm-static" and seen[1] is not default_scorer()


def test_training_raises_the_reward_it_is_given(tiny_model_dir, manifest, tmp_path, monkeypatch):
    """The end-to-end sign check: rewarded for token ids of the parity the untrained policy samples less,
    a short run makes the policy sample more of them (a flipped advantage, a log-prob forward cut from the graph or a wrong completion mask would
    not). The random-init model's distribution is nearly flat over 4,096 tokens, so sampling is limited
    to its top 4 tokens: the choice at each position is then learnable in a few steps."""
    import reasonact.train.tgrpo_stage as tgrpo_stage

    parity = []

    def rare_parity(completions=(), completion_ids=(), **kw):
        if not parity:  # the parity the untrained policy samples less (its first batch)
            parity.append(int(np.mean([t % 2 for ids in completion_ids for t in ids]) < 0.5))
        return [
            float(np.mean([t % 2 == parity[0] for t in ids])) if len(ids) else 0.0 for ids in completion_ids
        ]

    monkeypatch.setattr(tgrpo_stage, "reward_setup", lambda cfg, scorer=None: ([rare_parity], [1.0]))
    recipe = tiny_recipe(tiny_model_dir, manifest, num_generations=4, per_device_train_batch_size=4,
                         max_steps=16, learning_rate=1e-2, shuffled_generations=0)  # fmt: skip
    trainer = make_trainer(recipe, tmp_path, top_k=4)
    trainer.train()
    r = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    first, last = np.mean(r[:2]), np.mean(r[-2:])  # one reward log per generation batch
    assert last > first + 0.2, r
