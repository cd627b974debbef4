"""Stage 1 (FRE) and Stage 2 (V-SFT): data order, resume, adapters chained across stages, the CLI.

A tiny run folder is built per module: 12 generated FRE rows and 6 SynthAct clips (easy, 56 px) with
concise template chains. Training runs a few steps of batch 2 on the committed tiny base.
"""

import json

import pytest
import torch

from reasonact.config import load_config
from reasonact.paths import read_jsonl
from reasonact.train.sft import StageData, VideoCollator, stage_examples, train_stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from reasonact.cot.filter import generate_cot
    from reasonact.cot.reasoning_tasks import generate_tasks
    from reasonact.data.synthact import generate
    from reasonact.library import load_library

    root = tmp_path_factory.mktemp("sft")
    run = root / "run"
    fre = run / "02_cot_generation" / "fre"
    fre.mkdir(parents=True)
    lib = load_library()
    rows = generate_tasks(12, actions=[a for a in lib if a.dataset == "hmdb51"], seed=0)
    (fre / "fre.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = generate(root / "synthact", 1, seed=3, level="easy", size=56, splits=(("train", 1.0),),
                    classes=["jump", "sit", "stand", "wave", "clap", "kick"], workers=1, progress=False)  # fmt: skip
    generate_cot(data["manifests"]["train"], run / "02_cot_generation", recipe=recipe())
    return run


def recipe(**over):
    base = {"fre.max_steps": 4, "fre.per_device_train_batch_size": 2, "fre.save_steps": 2, "fre.logging_steps": 1,
            "vsft.max_steps": 2, "vsft.per_device_train_batch_size": 2, "vsft.save_steps": 2, "vsft.logging_steps": 1,
            "teacher.style": "concise"}  # fmt: skip
    return load_config("tiny", {**base, **over})


def test_stage_data_order_is_a_seeded_permutation_per_epoch():
    rows = [{"messages": [], "k": i} for i in range(5)]
    data = StageData(rows, 12, seed=1, make_example=lambda r: {"messages": r["messages"], "k": r["k"]})
    ks = [data.example(i)["k"] for i in range(12)]
    assert sorted(ks[:5]) == sorted(ks[5:10]) == list(range(5))  # every row once per epoch
    assert ks != sorted(ks) or ks[5:10] != ks[:5]  # shuffled
    again = StageData(rows, 12, seed=1, make_example=data.make_example)
    assert [again.example(i)["k"] for i in range(12)] == ks  # depends only on (seed, i)
    with pytest.raises(ValueError, match="no training rows"):
        StageData([], 3, 0, dict)


def test_bad_rows_are_errors_naming_the_file(tmp_path):
    bad = tmp_path / "fre.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    with pytest.raises(ValueError, match=r"fre.jsonl:2: not valid JSON"):
        read_jsonl(bad, "FRE data")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        stage_examples(recipe(**{"fre.data": str(tmp_path / "missing.jsonl")}), "fre")
    nochain = tmp_path / "cot.jsonl"
    nochain.write_text('{"video": "x.mp4"}\n')
    with pytest.raises(ValueError, match=r"cot.jsonl: rows \[1\] lack 'chain'"):
        stage_examples(recipe(**{"vsft.data": str(nochain)}), "vsft")


def test_damaged_video_rows_are_skipped_and_counted(run, tmp_path):
    rows = read_jsonl(run / "02_cot_generation" / "cot.jsonl", "chains")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00 ftypisom" + b"\x00" * 100)
    path = tmp_path / "cot.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + [{**rows[0], "video": str(broken)}]))
    data, summary = stage_examples(recipe(**{"vsft.data": str(path)}), "vsft")
    assert summary["rows"] == len(rows) and len(summary["skipped"]) == 1
    assert "broken.mp4" in summary["skipped"][0]["video"]
    ex = data.example(0)
    assert ex["frames"].shape == (16, 56, 56, 3) and ex["messages"][-1]["role"] == "assistant"


def test_each_clip_is_decoded_once_per_run(run, monkeypatch):
    """The damaged-video check decodes every clip; the examples then reuse those frames (decoding again every
    epoch was a quarter of a tiny V-SFT step)."""
    import reasonact.video as video

    decoded = []
    original = video.read_video
    monkeypatch.setattr(video, "read_video", lambda path, **kw: decoded.append(path) or original(path, **kw))
    data, summary = stage_examples(recipe(**{"vsft.max_steps": 12}), "vsft", run)
    examples = [data.example(i) for i in range(len(data))]  # 24 examples of 6 clips: every clip seen 4 times
    assert len(examples) == 24 and len(decoded) == summary["rows"] == 6
    assert examples[0]["frames"].shape == (16, 56, 56, 3)
    tiny_budget = video.clip_reader(
        recipe().video.frames(), budget_bytes=1
    )  # room for one clip: decodes again
    for path in decoded[:2] * 2:
        tiny_budget(path)
    assert len(decoded) == 6 + 4


def test_cpu_loss_is_trls_fused_loss(run):
    """On a CPU, SFT computes the loss from full logits (next_token_nll); TRL's fused LM head gives the same
    number and the same gradient, with and without the accumulated batch's token count."""
    from trl.trainer.utils import add_fused_lm_head

    from reasonact.train.sft import next_token_nll
    from reasonact.vlm import load_model

    data, _ = stage_examples(recipe(), "vsft", run)
    model, processor = load_model(recipe(), lora=False)
    batch = VideoCollator(processor)([data.example(i) for i in range(3)])
    add_fused_lm_head(model)
    for count in (None, 500):
        fused = model(**batch, fused_lm_head=True)
        expected = -fused.log_probs.sum() / (fused.label_mask.sum() if count is None else count)
        (g_fused,) = torch.autograd.grad(expected, model.lm_head.weight)
        loss = next_token_nll(model, batch, count)
        (g_ours,) = torch.autograd.grad(loss, model.lm_head.weight)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(g_ours, g_fused, atol=1e-6)
    assert loss.item() < next_token_nll(model, batch).item()  # 500 > the batch's own labelled tokens


def test_cpu_training_takes_its_loss_from_full_logits(run, tmp_path, monkeypatch):
    """On a CPU every training step goes through next_token_nll, never TRL's fused LM head."""
    import reasonact.train.sft as sft

    calls = []
    own = sft.next_token_nll
    monkeypatch.setattr(sft, "next_token_nll", lambda *a, **k: calls.append(1) or own(*a, **k))
    part = tmp_path / "run"
    (part / "02_cot_generation").mkdir(parents=True)
    (part / "02_cot_generation" / "fre").symlink_to(run / "02_cot_generation" / "fre")
    metrics = train_stage(recipe(**{"fre.max_steps": 2}), "fre", run=part, resume=False)
    assert metrics["steps"] == 2 and len(calls) == 2


def test_fre_labels_cover_only_the_answer(run):
    from reasonact.vlm import load_model

    data, _ = stage_examples(recipe(), "fre", run)
    _, processor = load_model(recipe(), lora=False)
    batch = VideoCollator(processor)([data.example(0)])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    learned = processor.tokenizer.decode(ids[labels != -100])
    assert learned.startswith("<think>") and learned.endswith("<|im_end|>")
    assert "pixel_values_videos" not in batch  # text-only: no video at all


def _train_recording(r, stage, run, stop_at=None, resume=True):
    """train_stage with the collator recorded; ``stop_at``: interrupt after that optimizer step."""
    from transformers import TrainerCallback

    import reasonact.train.sft as sft

    seen = []
    original = sft.VideoCollator

    class Recording(original):
        def __call__(self, examples):
            seen.append([ex["index"] for ex in examples])
            return super().__call__(examples)

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if stop_at is not None and state.global_step >= stop_at:
                control.should_training_stop = True

    sft.VideoCollator = Recording
    try:
        metrics = train_stage(r, stage, run=run, resume=resume, callbacks=[Stop()])
    finally:
        sft.VideoCollator = original
    return metrics, seen


def test_interrupted_fre_resumes_without_skipping_or_repeating(run, tmp_path):
    r = recipe()
    full_run = tmp_path / "full"
    (full_run / "02_cot_generation").mkdir(parents=True)
    (full_run / "02_cot_generation" / "fre").symlink_to(run / "02_cot_generation" / "fre")
    full, seen_full = _train_recording(r, "fre", full_run, resume=False)
    assert full["steps"] == 4 and [i for b in seen_full for i in b] == list(range(8))

    part_run = tmp_path / "part"
    (part_run / "02_cot_generation").mkdir(parents=True)
    (part_run / "02_cot_generation" / "fre").symlink_to(run / "02_cot_generation" / "fre")
    first, seen1 = _train_recording(r, "fre", part_run, stop_at=2, resume=False)
    assert first["steps"] == 2 and (part_run / "03_fre" / "checkpoints" / "checkpoint-2").is_dir()
    second, seen2 = _train_recording(r, "fre", part_run, resume=True)
    assert second["steps"] == 4
    # accelerate's data loader fetches one batch ahead, so part 1 collated a third batch it never
    # trained on; the batches trained on are the first `steps` ones of each part
    trained = [i for b in seen1[: first["steps"]] + seen2 for i in b]
    assert trained == list(range(8))  # every example once, in order: none skipped, none repeated
    assert len(seen1) <= first["steps"] + 1
    # same data, same order, same seed: the resumed adapter equals the uninterrupted one
    from safetensors.torch import load_file

    a = load_file(full_run / "03_fre" / "adapter" / "adapter_model.safetensors")
    b = load_file(part_run / "03_fre" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_vsft_merges_the_fre_adapter_and_writes_its_card(run):
    from reasonact.train.sft import accuracy_eval

    r = recipe()
    fre = train_stage(r, "fre", run=run, resume=False)
    assert fre["steps"] == 4 and fre["merged_adapters"] == []  # FRE is the first stage: nothing to merge
    from safetensors.torch import load_file

    weights = load_file(run / "03_fre" / "adapter" / "adapter_model.safetensors")
    assert any(
        "lora_B" in k and v.abs().sum() > 0 for k, v in weights.items()
    )  # LoRA B starts at 0: it trained
    assert any("embed_tokens" in k for k in weights)  # the tiny profile's trainable embeddings are saved too
    calls = []

    def eval_fn(model, processor, step):
        calls.append(step)
        return {"accuracy": 0.5}

    m = train_stage(r, "vsft", run=run, resume=False, eval_fn=eval_fn)
    assert m["merged_adapters"] == [str(run / "03_fre" / "adapter")]
    assert m["steps"] == 2 and calls == [0, 2] and m["before"] == {"accuracy": 0.5}
    card = json.loads((run / "04_video_sft" / "model_card.json").read_text())
    assert card["stage"] == "vsft" and card["lora"]["r"] == r.model.lora.r and card["loss"]
    assert (run / "04_video_sft" / "adapter" / "adapter_config.json").is_file()
    # without FRE: the ablation row
    m = train_stage(
        load_config("tiny", {**{"vsft.from_fre": False}, **_small()}), "vsft", run=run, resume=False
    )
    assert m["merged_adapters"] == []
    # the greedy accuracy eval runs on real clips and returns numbers in range
    from reasonact.vlm import load_model

    model, processor = load_model(r, lora=False)
    ev = accuracy_eval(r, split="val", clips=2)(model, processor, 0)
    assert ev["clips"] == 2 and 0.0 <= ev["accuracy"] <= 1.0 and 0.0 <= ev["format"] <= 1.0


def _small():
    return {
        "vsft.max_steps": 2,
        "vsft.per_device_train_batch_size": 2,
        "vsft.save_steps": 2,
        "teacher.style": "concise",
    }


def test_cli_train_fre(run, capsys):
    from reasonact.cli import main

    assert main(["train", "fre", "--run", str(run), "--no-resume", "--set", "fre.max_steps=1",
                 "--set", "fre.per_device_train_batch_size=2", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["stage"] == "fre" and out["steps"] == 1


def test_fre_held_out_tasks_count_their_overlap_with_training():
    from reasonact.train.sft import fre_held_out

    recipe = load_config("tiny")
    tasks, overlap = fre_held_out(recipe, [], n=12)
    assert len(tasks) == 12 and overlap == 0 and all(t.get("answer") for t in tasks)
    again, overlap = fre_held_out(recipe, tasks[:5], n=12)
    assert again == tasks and overlap >= 5  # same seed, same tasks; the 5 given as training rows overlap


def test_mixed_precision_only_for_a_bf16_model_on_a_gpu(monkeypatch):
    from reasonact.train.sft import mixed_precision

    fp32, bf16 = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).to(torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mixed_precision(bf16) == {"bf16": False, "fp16": False}  # CPU: never (TRL's default is on)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mixed_precision(bf16) == {"bf16": True, "fp16": False}
    assert mixed_precision(fp32) == {"bf16": False, "fp16": False}
