"""The tiny base model's perception pretraining (reasonact/train/base.py) and the SFT plumbing it shares
with FRE / V-SFT (reasonact/train/sft.py). Fast: no full build."""

import json
import re
import shlex

import numpy as np
import pytest
import torch

from reasonact import paths, vlm
from reasonact.config import CONFIG_DIR, ConfigError, Recipe, TrainConfig, load_config, parse_overrides
from reasonact.data import perception
from reasonact.data import synthact as sa
from reasonact.eval import experiments
from reasonact.train import base, sft
from reasonact.train.sft import VideoCollator, last_checkpoint, train_sft
from reasonact.vlm import VISION_TOKENS


def _forbidden_names() -> set[str]:
    """Every class, phase and sub-action name of the library (and SynthAct's own), normalised."""
    from reasonact.library import load_library, normalize_label

    names = {normalize_label(c) for c in sa.CLASSES}
    for action in load_library():
        names.add(normalize_label(action.label))
        for phase in action.phases:
            names.add(normalize_label(phase.name))
            names.update(normalize_label(s.name) for s in phase.sub_actions)
    for label in sa.CLASSES:
        for phase in sa.library_phases(label):
            names.add(normalize_label(phase["name"]))
            names.update(normalize_label(s) for s in phase["sub_actions"])
    return names


def test_perception_text_never_names_actions_phases_or_sub_actions():
    names = _forbidden_names()
    assert len(names) > 50
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b")
    vocabulary = {v for values in perception.FIELDS.values() for v in values}
    texts = []
    for label in sa.CLASSES:
        for i in range(16):  # 192 clips: every class, varied timing
            _, rec = sa.render_clip(label, sa.clip_seed(0, "test-base", label, i), "easy", 64)
            texts.append(
                perception.perception_text(rec["pose"], perception.sample_indices(rec["num_frames"], 16))
            )
    for text in texts:
        assert not pattern.search(text.lower()), (pattern.search(text.lower()).group(0), text)
        words = set(re.sub(r"frames \d+-\d+:", " ", text).replace(".", " ").split())
        assert words <= vocabulary, words - vocabulary
    # the descriptions differ between clips and between classes: the text carries information
    assert len(set(texts)) > 100


def _pose(angles, height, contact, com_y, tilt_deg=0.0, scale=10.0):
    """A hand-made pose: per-frame angles (8), height, feet on the ground, centre-of-mass height."""
    n = len(height)
    joints = np.zeros((n, 12, 2))
    t = np.radians(tilt_deg)
    joints[:, 7] = [20, 40]  # pelvis (pixels, y down)
    joints[:, 1] = [20 + 10 * np.sin(t), 40 - 10 * np.cos(t)]  # neck, one torso (10 px) away
    com = np.asarray(com_y, float) * scale
    return {"angles": np.asarray(angles, float), "height": np.asarray(height, float),
            "contact": np.asarray(contact, bool), "joints": joints, "scale": scale,
            "com_delta": np.stack([np.zeros(n), -np.diff(com, prepend=com[:1])], 1)}  # fmt: skip


def test_perception_text_on_hand_made_poses():
    upright = [180, 180, 5, 5, 176, 176, 178, 178]  # arms hang, everything straight
    crouch = [175, 175, 60, 60, 95, 95, 90, 90]  # arms forward, hips and knees folded
    hang = [170, 170, 150, 150, 175, 175, 178, 178]  # arms overhead
    pose = _pose(
        [upright, upright, crouch, crouch, hang, hang],
        height=[1.0, 1.0, 0.75, 0.75, 1.1, 1.1],
        contact=[[1, 1], [1, 1], [1, 1], [1, 0], [0, 0], [0, 0]],
        com_y=[0, 0, -0.3, -0.3, 0.2, 0.2],
    )
    assert perception.perception_text(pose, range(6)) == (
        "frames 1-2: tall upright low straight straight straight two level still. "
        "frames 3-4: mid upright mid straight folded folded one down moving. "
        "frames 5-6: high upright high straight straight straight none up moving."
    )
    # the trunk: lying flat and leaning
    assert perception.perception_fields(_pose([upright] * 2, [0.3] * 2, [[1, 1]] * 2, [0, 0], tilt_deg=85), [0, 1])[0][
        "trunk"] == "flat"  # fmt: skip
    assert perception.perception_fields(_pose([upright] * 2, [0.9] * 2, [[1, 1]] * 2, [0, 0], tilt_deg=35), [0, 1])[0][
        "trunk"] == "tilted"  # fmt: skip
    # the description follows the SAMPLED frames: 16 indices -> 8 ranges
    _, rec = sa.render_clip("jump", 0, "easy", 64)
    text = perception.perception_text(rec["pose"], perception.sample_indices(rec["num_frames"], 16))
    assert text.count("frames ") == 8 and text.startswith("frames 1-2: ") and "frames 15-16: " in text


def _examples(n=3, size=56):
    items = [perception.render_example(label, i, "easy", 64, size) for i, label in enumerate(sa.CLASSES[:n])]
    return items, [perception.to_example(it) for it in items]


def test_collator_masks_all_but_the_answer(tiny_model_dir):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = proc.tokenizer
    items, examples = _examples(2)
    text_only = {"messages": [{"role": "user", "content": "What is 2 + 3?"},
                              {"role": "assistant", "content": "<think>2 + 3 = 5</think><answer>5</answer>"}]}  # fmt: skip
    batch = VideoCollator(proc)([*examples, text_only])
    labels, ids = batch["labels"], batch["input_ids"]
    assert "pixel_values_videos" in batch and batch["video_grid_thw"].shape[0] == 2
    vision = torch.tensor([tok.convert_tokens_to_ids(t) for t in VISION_TOKENS])
    assert not (labels[torch.isin(ids, vision)] != -100).any(), "no loss on vision tokens"
    assert not (labels[batch["attention_mask"] == 0] != -100).any(), "no loss on padding"
    assert (batch["attention_mask"][2] == 0).any(), "the text-only row is padded (right)"
    answers = [it["text"] for it in items] + ["<think>2 + 3 = 5</think><answer>5</answer>"]
    for row, answer in enumerate(answers):
        kept = labels[row][labels[row] != -100]
        assert tok.decode(kept) == answer + "<|im_end|>"  # the answer and its end, nothing of the prompt
        assert torch.equal(kept, ids[row][labels[row] != -100])


def test_tag_weights_fall_on_the_answers_tags_and_scale_their_loss(tiny_model_dir, tmp_path, monkeypatch):
    """``base.tag_weight``: the collator weighs the tokens of the format's tags in the labelled answer (not the
    format hint's tags in the prompt, not a plain perception answer), the loss multiplies each token's NLL by
    its weight over the same divisor, and a training step runs with the weights (they never reach the model),
    on a GPU as well through the full-logits trainer."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from reasonact.train.sft import next_token_nll

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    tok = proc.tokenizer
    items, examples = _examples(2)
    in_format, _ = perception.format_example(items[0], np.random.default_rng(0), "clip")
    batch = base.TagWeightCollator(proc, 4.0)([in_format, examples[1]])
    w, labels, ids = batch["loss_weights"], batch["labels"], batch["input_ids"]
    assert w.shape == labels.shape and set(w.unique().tolist()) == {1.0, 4.0}
    assert (w[1] == 1).all(), "a plain perception answer has no tags"
    assert (labels[0][w[0] == 4] != -100).all(), "only answer tokens are weighed"
    heavy = tok.decode(ids[0][w[0] == 4])
    assert heavy == "<think></think><answer></answer>", heavy  # each tag whole, nothing else
    assert "<think>" in tok.decode(ids[0][labels[0] == -100]), "the prompt's hint names the tags too"

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    plain = {k: v for k, v in batch.items() if k != "loss_weights"}
    with torch.no_grad():
        logits = model(**{k: v for k, v in plain.items() if k != "labels"}).logits
        logps = vlm.token_logps(logits, labels)[0]
        count = (labels[:, 1:] != -100).sum()
        assert next_token_nll(model, plain).item() == pytest.approx((-logps.sum() / count).item(), rel=1e-5)
        weighted = -(logps * w[:, 1:]).sum() / count
        assert next_token_nll(model, batch).item() == pytest.approx(weighted.item(), rel=1e-5)
        assert weighted > -logps.sum() / count

    data = base.PerceptionData([items], length=4, format_share=0.5, format_question="clip").dataset()
    args = TrainConfig(learning_rate=1e-3, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                       max_steps=1, save_steps=1, logging_steps=1, warmup_steps=0.0)  # fmt: skip
    trainer = train_sft(model, proc, data, args, base.TagWeightCollator(proc, 4.0), tmp_path / "run",
                        train_sampling_strategy="sequential", disable_tqdm=True)  # fmt: skip
    assert trainer.state.global_step == 1
    assert np.isfinite([h["loss"] for h in trainer.state.log_history if "loss" in h]).all()
    trainer.args.label_smoothing_factor = 0.1  # TRL's own loss would pass the weights to the model
    with pytest.raises(ValueError, match="weighted tokens .base.tag_weight. need the plain nll loss"):
        trainer.compute_loss(model, batch)

    # on a GPU too, weighted batches take the full-logits loss: TRL's fused LM head would drop the weights
    class Chosen(Exception):
        pass

    def chosen():
        raise Chosen

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sft, "trl_config", lambda *a, **k: None)  # SFTConfig would set up the absent GPU
    monkeypatch.setattr(sft, "cpu_sft_trainer", chosen)
    with pytest.raises(Chosen):
        train_sft(
            model, proc, data, args, base.TagWeightCollator(proc, 4.0), tmp_path / "gpu", disable_tqdm=True
        )


def test_train_sft_three_steps_then_resumes(tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback

    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    items, _ = _examples(4)
    data = base.PerceptionData([items], length=10).dataset()
    args = TrainConfig(learning_rate=1e-3, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                       max_steps=3, save_steps=3, logging_steps=1, warmup_steps=0.0)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    seen = []
    trainer = train_sft(model, proc, data, args, VideoCollator(proc), tmp_path / "run",
                        eval_fn=lambda m, step: seen.append(step) or {"dummy": 1.0}, eval_steps=2,
                        train_sampling_strategy="sequential", disable_tqdm=True)  # fmt: skip
    assert trainer.state.global_step == 3 and last_checkpoint(tmp_path / "run").endswith("checkpoint-3")
    assert seen == [2, 3]
    assert not trainer.args.bf16 and not trainer.args.fp16  # fp32 on the CPU, not TRL's bf16 default
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(np.isfinite(losses))

    saved = AutoModelForImageTextToText.from_pretrained(tmp_path / "run" / "checkpoint-3").state_dict()

    class Count(TrainerCallback):
        steps, restored = 0, None

        def on_step_begin(self, args, state, control, model=None, **k):
            if Count.restored is None:  # the weights the resumed run starts from are the checkpoint's
                sd = model.state_dict()
                Count.restored = all(torch.equal(sd[n], saved[n]) for n in saved)

        def on_step_end(self, *a, **k):
            Count.steps += 1

    args.max_steps = 5
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    trainer = train_sft(model, proc, data, args, VideoCollator(proc), tmp_path / "run", callbacks=[Count()],
                        train_sampling_strategy="sequential", disable_tqdm=True)  # fmt: skip
    assert trainer.state.global_step == 5 and Count.steps == 2, "resumed at step 3, ran 2 more"
    assert Count.restored, "resuming restored the trained weights, not the initial ones"


def test_perception_data_curriculum_is_deterministic():
    easy, medium = (
        [{"level": "easy", "i": i} for i in range(5)],
        [{"level": "medium", "i": i} for i in range(5)],
    )
    data = base.PerceptionData(
        [easy, medium], length=1000, seed=1, mix_start=0.2, mix_end=0.6, last_share=0.8
    )
    assert data.level_share(0) == 0 == data.level_share(199) and data.level_share(999) == pytest.approx(0.8)
    levels = [data.item(i)[0]["level"] for i in range(1000)]
    assert set(levels[:200]) == {"easy"}
    assert 0.7 < levels[600:].count("medium") / 400 < 0.9
    assert [data.item(i) for i in range(50)] == [data.item(i) for i in range(50)]  # resume-safe


def test_one_range_per_example_asks_for_it_by_name():
    item = perception.render_example("kick", 3, "easy", 64, 56)
    ex = perception.to_example(item, [2])
    question, answer = ex["messages"][0]["content"][1]["text"], ex["messages"][1]["content"][0]["text"]
    assert question == "Describe the body in frames 5-6."
    assert answer == perception._range_text(2, item["fields"][2]) and answer in item["text"]
    data = base.PerceptionData([[item]], length=50, ranges_per_example=1)
    ranges = [data.item(i)[1] for i in range(50)]
    assert all(len(r) == 1 for r in ranges) and len({r[0] for r in ranges}) > 4


def test_a_format_share_asks_questions_in_the_completion_format_without_a_label():
    item = perception.render_example("sit", 5, "easy", 64, 56)
    plain = base.PerceptionData([[item]], length=200, ranges_per_example=1)
    mixed = base.PerceptionData([[item]], length=200, ranges_per_example=1, format_share=0.3)

    def said(ex):
        return ex["messages"][1]["content"][0]["text"]

    answers = [said(mixed.example(i)) for i in range(200)]
    in_format = [a for a in answers if a.startswith("<think>frames ") and a.endswith("</answer>")]
    assert 40 < len(in_format) < 80 and all(a.startswith("frames ") for a in set(answers) - set(in_format))
    assert not any(said(plain.example(i)).startswith("<think>") for i in range(200))
    again = base.PerceptionData([[item]], length=200, ranges_per_example=1, format_share=0.3)
    assert [said(again.example(i)) for i in reversed(range(30))] == answers[:30][::-1]  # i alone decides
    ex, truth = perception.format_example(item, np.random.default_rng(0))
    question = ex["messages"][0]["content"][1]["text"]
    options = question.split("Options: ")[1].split(".")[0].split(", ")
    r = int(question.split(" in frames ")[1].split("-")[0]) // 2  # "... in frames 5-6?" -> range 2
    assert truth in options and truth == item["fields"][r][question.split()[1]]
    assert said(ex).endswith(f"<answer>{truth}</answer>") and "sit" not in question + said(ex)
    assert question.endswith("Answer as <think>reasoning</think><answer>action</answer>.")
    # the clip form: a field at the start or the end, the think describes every range in order
    asked = []
    for seed in range(12):
        ex, truth = perception.format_example(item, np.random.default_rng(seed), "clip")
        question = ex["messages"][0]["content"][1]["text"]  # "Which knees does the body have at the end ..."
        asked.append((question.split()[8], question.split()[1], truth))  # (start | end, field, truth)
        assert said(ex) == f"<think>{item['text']}</think><answer>{truth}</answer>" and "sit" not in question
    first, last = item["fields"][0], item["fields"][-1]
    assert all(truth == (first if when == "start" else last)[f] for when, f, truth in asked)
    assert {when for when, f, _ in asked if first[f] != last[f]} == {"start", "end"}  # both told apart
    clip = base.PerceptionData(
        [[item]], length=50, ranges_per_example=1, format_share=1.0, format_question="clip"
    )
    assert all(said(clip.example(i)).startswith("<think>frames 1-2: ") for i in range(50))


def test_the_base_build_mixes_in_its_format_share(tmp_path, monkeypatch):
    class Built(Exception):
        pass

    def capture(*args, **kwargs):  # stop the build where its training data is made
        raise Built(args, kwargs)

    real = base.PerceptionData
    monkeypatch.setattr(base, "PerceptionData", capture)
    overrides = [
        "base.format_share=0.5",
        "base.format_question=clip",
        "base.pool_per_class=1",
        "base.workers=1",
    ]
    with pytest.raises(Built) as made:
        base.build_base(load_config("tiny", parse_overrides(overrides)), out=tmp_path / "b", progress=False)
    args, kwargs = made.value.args
    data = real(*args, **kwargs)
    assert (data.format_share, data.format_question) == (0.5, "clip")

    # base.tag_weight picks the collator that weighs the tags; at its default 1 the plain one
    monkeypatch.setattr(base, "PerceptionData", real)
    monkeypatch.setattr(base, "train_sft", capture)
    for weight, kind in ((3.0, base.TagWeightCollator), (1.0, VideoCollator)):
        recipe = load_config("tiny", parse_overrides([*overrides, f"base.tag_weight={weight}"]))
        with pytest.raises(Built) as made:
            base.build_base(recipe, out=tmp_path / "b", progress=False)
        collator = made.value.args[0][4]
        assert type(collator) is kind and getattr(collator, "weight", 1.0) == weight
    with pytest.raises(ConfigError, match="'base.tag_weight' = 0.0 must be above 0"):
        load_config("tiny", parse_overrides(["base.tag_weight=0"]))


def _probed_build(tmp_path, rates: dict[int, float], best_before: dict | None = None):
    """A 4-step base build with ``select_by_format``, evaluated every step, whose format probe at step s writes
    the format in ``rates[s]`` of its completions; ``best_before``: a best-so-far file already on disk, as an
    interrupted build leaves it. Returns the card, the weights saved and the weights at each probe."""
    from transformers import AutoModelForImageTextToText

    states = {}

    def probe(model, processor, videos, decoding, seed=0):
        assert (decoding.temperature, decoding.top_p, decoding.max_new_tokens) == (
            0.7,
            0.9,
            256,
        )  # the paper's
        assert len(videos) == 48  # the held-out perception clips, 4 per class
        step = min(set(rates) - set(states))
        states[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        good = round(rates[step] * len(videos))
        return ["<think>a</think><answer>b</answer>"] * good + ["b"] * (len(videos) - good)

    # eval.temperature 0.3: the probe's decoding is the paper's, fixed, not the recipe's (the key omits eval)
    overrides = ["base.select_by_format=true", "base.max_steps=4", "base.eval_steps=1", "base.save_steps=2",
                 "base.pool_per_class=1", "base.per_device_train_batch_size=2", "base.workers=1",
                 "eval.temperature=0.3"]  # fmt: skip
    if best_before is not None:
        (tmp_path / "b.train").mkdir()
        torch.save(best_before, tmp_path / "b.train" / "format_best.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base, "complete_clips", probe)
        out = base.build_base(
            load_config("tiny", parse_overrides(overrides)), out=tmp_path / "b", progress=False
        )
    assert not out.with_name("b.train").exists()
    card = json.loads((out / "base_card.json").read_text())
    return card, AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float16).state_dict(), states


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k].half()) for k in a)


@pytest.mark.slow
def test_select_by_format_keeps_the_best_probed_weights(tmp_path):
    """With ``select_by_format`` the build ends on the weights of the second-half evaluation whose completions
    to the action question most often follow the format (ties: the later one), and its card says which."""
    card, saved, states = _probed_build(tmp_path, {2: 1.0, 3: 1.0, 4: 0.5})  # steps 2-4 of 4: 3 ties 2, wins
    assert card["selected_by_format"] == {"step": 3, "format": 1.0}
    assert card["final_perception"] == card["curve"][2] and card["curve"][2]["step"] == 3  # the weights saved
    assert [c.get("format") for c in card["curve"]] == [None, 1.0, 1.0, 0.5]
    assert {s: _same(saved, st) for s, st in states.items()} == {2: False, 3: True, 4: False}


@pytest.mark.slow
def test_select_by_format_remembers_the_best_across_a_resume(tmp_path):
    """The best so far lives on disk: a build that finds one there (an earlier run of the same build, cut off)
    keeps it unless a later evaluation writes the format at least as often."""
    built = _probed_build(tmp_path / "first", {2: 0.0, 3: 0.0, 4: 0.0})[1]
    earlier = {k: v / 2 for k, v in built.items()}  # a full set of weights this build never reaches
    best = {"step": 1, "format": 0.9, "perception": {"step": 1, "mean": 0.5}, "state": earlier}
    card, saved, states = _probed_build(tmp_path, {2: 0.5, 3: 0.75, 4: 0.5}, best_before=best)
    assert card["selected_by_format"] == {"step": 1, "format": 0.9}
    assert card["final_perception"] == {"step": 1, "mean": 0.5}
    assert _same(saved, {k: v.float() for k, v in earlier.items()})
    assert not any(_same(saved, st) for st in states.values())


def _rebuilt(command: str):
    """The recipe a printed ``reasonact base build`` command loads, read as a POSIX shell reads it."""
    words = shlex.split(command)
    assert words[:3] == ["reasonact", "base", "build"] and "--force" in words
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    source = (
        words[words.index("--config") + 1] if "--config" in words else words[words.index("--profile") + 1]
    )
    return load_config(source, parse_overrides(sets))


def test_the_base_card_command_remakes_the_same_base(tmp_path, monkeypatch):
    assert base.remake_command(load_config("tiny")) == "reasonact base build --profile tiny --force"
    overrides = [
        "base.format_share=0.7",
        "model.tiny.mrope_section=[2,7,7]",
        'base.split="no"',
        "base.workers=1",
    ]
    changed = load_config("tiny", parse_overrides(overrides))
    command = base.remake_command(changed)
    assert "base.format_share=0.7" in command and "workers" not in command  # workers do not change the base
    assert vlm.base_key(_rebuilt(command)) == vlm.base_key(changed)
    assert _rebuilt(command).base.split == "no"  # a string YAML would read as a boolean stays a string
    # a recipe file of one's own, named relatively: the command names it absolutely, from anywhere
    (tmp_path / "my recipe.yaml").write_text((CONFIG_DIR / "tiny.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    mine = load_config("my recipe.yaml", parse_overrides(["video.num_frames=8"]))
    command = base.remake_command(mine)
    monkeypatch.chdir(CONFIG_DIR)
    assert "--config" in command and vlm.base_key(_rebuilt(command)) == vlm.base_key(mine)
    # no file behind it (the dataclass defaults): diffed against the profile the command loads
    assert vlm.base_key(_rebuilt(base.remake_command(Recipe()))) == vlm.base_key(Recipe())


def test_base_key_follows_the_recipe(tmp_path, monkeypatch):
    r = load_config("tiny")
    key = vlm.base_key(r)
    assert key == vlm.base_key(load_config("tiny"))
    for override in ["base.learning_rate=0.01", "base.max_steps=7", "base.levels=[medium]", "video.size=112",
                     "base.format_share=0.25", "model.tiny.seed=3"]:  # fmt: skip
        assert vlm.base_key(load_config("tiny", parse_overrides([override]))) != vlm.base_key(r), override
    # the settings added after the first bases are left out at their first values (share 0, the range question,
    # no selection, weight 1): the bases and stages made before them keep their keys
    first = load_config("tiny", parse_overrides(["base.format_share=0", "base.format_question=range"]))
    first_key = vlm.base_key(first)
    later = {"format_share", "format_question", "select_by_format", "tag_weight"}
    assert not later & set(vlm.base_settings(first))
    assert first_key != key and experiments.base_key(first) != experiments.base_key(r)
    clip = load_config("tiny", parse_overrides(["base.format_share=0", "base.format_question=clip"]))
    assert vlm.base_key(clip) != first_key
    with pytest.raises(ConfigError, match="'base.format_question' = 'whole' must be range or clip"):
        load_config("tiny", parse_overrides(["base.format_question=whole"]))
    for override in ["base.select_by_format=true", "base.tag_weight=4"]:
        assert vlm.base_key(load_config("tiny", parse_overrides([override]))) != key, override
    monkeypatch.setattr(paths, "GENERATOR_VERSION", "test-bump")
    assert vlm.base_key(r) != key


def test_model_path_prefers_a_matching_committed_base(tmp_path, monkeypatch):
    import json

    from reasonact.vlm import model_path

    committed = tmp_path / "tiny-base"
    committed.mkdir()
    (committed / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(vlm, "COMMITTED_BASE_DIR", committed)
    monkeypatch.setattr(vlm, "CACHE_DIR", tmp_path / "cache")
    r = load_config("tiny")
    (committed / "base_card.json").write_text(json.dumps({"key": vlm.base_key(r)}))
    assert model_path(r) == str(committed)
    # another recipe: the committed copy does not match, and loading never builds one: a clear error
    other = load_config("tiny", parse_overrides(["base.max_steps=7"]))
    with pytest.raises(FileNotFoundError, match="reasonact base build"):
        model_path(other)
    # use_base false: the random-init model, never the base; missing -> the command that builds it
    random_init = load_config("tiny", parse_overrides(["model.use_base=false"]))
    with pytest.raises(FileNotFoundError, match="reasonact model build-tiny"):
        model_path(random_init)
    folder = vlm.tiny_model_dir(random_init.model.tiny, random_init.video.size)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    assert model_path(random_init) == str(folder)


def test_the_committed_base_answers_from_the_frames_asked_about():
    """The committed base must bind a pose to its place in time: on sit/stand clips (the same poses in
    reverse order) its height at the first and last frames is right with the frames in order and falls
    to chance with them shuffled (the 300-step base scored ~50% on both: BENCHMARKS.md, "Temporal order
    on the tiny profile"). Per-range accuracies average to the field's."""
    from reasonact.video import Video, shuffle_frames

    recipe = load_config("tiny")
    assert vlm.find_base(recipe) == vlm.COMMITTED_BASE_DIR
    model, processor = vlm.load_model(recipe, lora=False)
    items = [perception.render_example(label, sa.clip_seed(0, "probe", "pair", i), "easy")
             for i in range(6) for label in ("sit", "stand")]  # fmt: skip
    rng = np.random.default_rng(1)
    shuffled = []
    for it in items:
        v = shuffle_frames(Video(it["frames"], it["indices"], it["fps"], it["total_frames"], "x"), rng)
        shuffled.append({**it, "frames": v.frames})
    ends = {}
    for name, batch in (("ordered", items), ("shuffled", shuffled)):
        acc = base.perception_accuracy(model, processor, batch, per_range=True)
        per = acc["per_range"]
        assert all(np.mean(per[k]) == pytest.approx(acc[k]) for k in perception.FIELDS)
        ends[name] = float(np.mean([per["height"][r] for r in (0, 1, 6, 7)]))
    assert ends["ordered"] >= 0.85 and ends["shuffled"] <= 0.65, ends
