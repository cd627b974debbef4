"""The GPU recipes, every stage, through the CLI: ``reasonact train fre|vsft|tgrpo`` and ``reasonact eval``
on the 3B-shaped Qwen2.5-VL (real widths, real tokenizer and chat template, 2 text layers + 2 vision blocks)
with the ``qwen2.5-vl-3b`` and ``qwen2.5-vl-3b-qlora`` recipes; one step each (bench/qwen3b_cli.py runs
the same calls and prints their times and memory)."""

import json
import math

import pytest

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
from bench.qwen3b_cli import run_profile
from reasonact.data.qwen import build_3b_shaped

pytestmark = pytest.mark.slow  # ~6 minutes on 2 cores: 8 processes, each loading a 0.55 B model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    model = build_3b_shaped()
    root = tmp_path_factory.mktemp("qwen3b_cli")
    return {p: (root / p, run_profile(p, root / p, model)) for p in ("qwen2.5-vl-3b", "qwen2.5-vl-3b-qlora")}


def adapter_rank(folder) -> int:
    return json.loads((folder / "adapter" / "adapter_config.json").read_text())["r"]


@pytest.mark.parametrize("profile", ["qwen2.5-vl-3b", "qwen2.5-vl-3b-qlora"])
def test_every_stage_runs_from_the_cli(runs, profile):
    run, res = runs[profile]
    failed = {s: r["console_tail"] for s, r in res.items() if r["rc"] != 0}
    assert not failed and list(res) == ["fre", "vsft", "tgrpo", "eval"], failed
    fre, vsft, tgrpo, ev = (res[s] for s in ("fre", "vsft", "tgrpo", "eval"))
    # random init over 151,936 tokens: the first loss is near ln(151936) = 11.9
    assert fre["steps"] == 1 and 10.0 < fre["train_loss_first"] < 14.0
    assert vsft["steps"] == 1 and math.isfinite(vsft["train_loss_first"])
    assert vsft["merged_adapters"] == [str(run / "03_fre" / "adapter")]
    assert tgrpo["steps"] == 1 and tgrpo["merged_adapters"] == [
        str(run / "03_fre" / "adapter"),
        str(run / "04_video_sft" / "adapter"),
    ]
    for folder in ("03_fre", "04_video_sft", "05_tgrpo"):
        assert adapter_rank(run / folder) == 64  # the recipe's LoRA r
    card = json.loads((run / "05_tgrpo" / "model_card.json").read_text())
    assert card["tgrpo"]["num_generations"] == 8  # the recipe's G
    log = tgrpo["last_log"]
    assert "tgrpo/shuffled_accuracy" in log  # the G/2 shuffled-frame completions were generated, scored
    assert 0 < log["completions/mean_length"] <= 8 and math.isfinite(log["loss"])
    assert len(ev["adapters"]) == 3 and ev["clips"] == 4 and ev["evaluated"] == 3
    assert [s["video"] for s in ev["skipped"]["clips"]] == [str(run / "damaged.mp4")]
    assert "damaged.mp4" in ev["console_tail"]  # named on the console, not only in results.json
    assert set(ev["conditions"]) == {"ordered", "shuffled"}


def test_qlora_quantises_the_language_model(runs):
    lora, qlora = (runs[p][1]["fre"]["parameters"] for p in ("qwen2.5-vl-3b", "qwen2.5-vl-3b-qlora"))
    assert lora["trainable"] == qlora["trainable"]  # the same LoRA on both
    # nf4 packs two weights per stored byte: the 2 layers' linear weights count half in the quantised model
    linear = 2 * (2048 * (2048 + 2 * 256 + 2048) + 3 * 2048 * 11008)
    assert lora["total"] - qlora["total"] == linear // 2
