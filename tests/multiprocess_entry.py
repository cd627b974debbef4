"""One rank of tests/test_multiprocess.py: ``reasonact train ...`` with two probes, launched by
``accelerate launch --config_file configs/accelerate/cpu_gloo.yaml tests/multiprocess_entry.py train fre ...``.

The command line is the CLI's own (``reasonact.cli.main``); the probes only watch:
- SFT stages: the collator records the ``index`` of every example it batches (which examples each rank
  trained on); T-GRPO: the trainer records the clip of every row of each generation batch;
- a callback saves, at the end of training, this rank's adapter state (what ``save_pretrained`` writes),
  its state at the start, the world size and the backend to ``$MP_PROBE_DIR/rank<R>.pt``.
Under FSDP the parameters are shards between steps, so the weights are only recorded with DDP.
T-GRPO with ``MP_PARITY_REWARD=1``: the reward counts token ids of one parity (a dense signal the tiny
model's 8-token completions get), so that the ranks have gradients to synchronise.
"""

import os
import sys
from pathlib import Path

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix, before transformers)

# isort: split
import torch
import torch.distributed as dist
from transformers import TrainerCallback

import reasonact.train.sft as sft
import reasonact.train.tgrpo as tgrpo
import reasonact.train.tgrpo_stage as tgrpo_stage
from reasonact import cli

SEEN: list[list[int]] = []  # example indices of each micro-batch this rank collated, in order


class RecordingCollator(sft.VideoCollator):
    def __call__(self, examples):
        SEEN.append([int(ex["index"]) for ex in examples])
        return super().__call__(examples)


def adapter_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(model).items()}


class Probe(TrainerCallback):
    def __init__(self, out: Path, record_weights: bool):
        self.out, self.record_weights, self.start = out, record_weights, None

    def on_train_begin(self, args, state, control, model=None, **kw):
        if self.record_weights:
            self.start = adapter_state(model)

    def on_train_end(self, args, state, control, model=None, **kw):
        rank = dist.get_rank() if dist.is_initialized() else 0
        probe = {
            "rank": rank,
            "world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "steps": state.global_step,
            "model_class": type(model).__name__,  # FullyShardedDataParallel under FSDP, else the PeftModel
            "batches": SEEN,
            "start": self.start,
            "end": adapter_state(model) if self.record_weights else None,
        }
        torch.save(probe, self.out / f"rank{rank}.pt")


if __name__ == "__main__":
    out = Path(os.environ["MP_PROBE_DIR"])
    weights = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true"
    train_stage = sft.train_stage
    sft.VideoCollator = RecordingCollator  # train_stage builds its collator from this name
    cli.train_stage = lambda *a, **kw: train_stage(*a, callbacks=[Probe(out, weights)], **kw)  # noqa: E731

    train_tgrpo, generate = tgrpo_stage.train_tgrpo, tgrpo.VideoGRPOTrainer._generate_and_score_completions
    cli.train_tgrpo = lambda *a, **kw: train_tgrpo(*a, callbacks=[Probe(out, weights)], **kw)  # noqa: E731

    def recording_generate(self, inputs):
        SEEN.append([x["video"] for x in inputs])
        return generate(self, inputs)

    tgrpo.VideoGRPOTrainer._generate_and_score_completions = recording_generate
    if os.environ.get("MP_PARITY_REWARD") == "1":

        def parity(completions=(), completion_ids=(), **kw):
            return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]

        tgrpo_stage.reward_setup = lambda cfg, scorer=None: ([parity], [1.0])
    sys.exit(cli.main(sys.argv[1:]))
