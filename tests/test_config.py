import pytest

from reasonact.config import PROFILES, ConfigError, load_config, parse_overrides


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_load(profile):
    r = load_config(profile)
    assert r.profile == profile
    assert r.video.num_frames == 16
    assert r.source.endswith(f"{profile}.yaml")


def test_tiny_vs_full_sizes():
    tiny, full, qlora = (load_config(p) for p in PROFILES)
    assert tiny.model.name_or_path is None and tiny.video.size == 56
    assert full.model.name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct" and full.video.size == 224
    assert qlora.model.load_in_4bit and not full.model.load_in_4bit
    assert not full.model.trust_remote_code


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profile: tiny\nvideo:\n  num_frames: 16\n  sise: 56\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "video.sise" in str(e.value) and str(f) in str(e.value)


def test_unknown_top_level_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("profil: tiny\n")
    with pytest.raises(ConfigError, match="unknown key 'profil'"):
        load_config(f)


def test_type_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("video:\n  num_frames: many\n")
    with pytest.raises(ConfigError, match="video.num_frames"):
        load_config(f)
    f.write_text("video:\n  size: 100\n")
    with pytest.raises(ConfigError, match="multiple of 28"):
        load_config(f)
    f.write_text("model: [1, 2]\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(f)


def test_overrides():
    r = load_config("tiny", parse_overrides(["video.size=112", "fre.max_steps=3", "model.load_in_4bit=true"]))
    assert r.video.size == 112 and r.fre.max_steps == 3 and r.model.load_in_4bit is True
    with pytest.raises(ConfigError, match="unknown key 'fre.max_stepz'"):
        load_config("tiny", parse_overrides(["fre.max_stepz=3"]))
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["video.size"])


def test_unknown_profile():
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config("huge")


def test_stage_sections_become_trl_configs_with_a_checked_passthrough():
    """Every TRL-named field of a section reaches TRL's config unchanged; ``trl:`` passes any other TRL
    field through; a ``trl`` key TRL does not have is an error naming it; the stage's fixed values win."""
    from trl import GRPOConfig, SFTConfig

    from reasonact.train.sft import trl_config
    from reasonact.train.tgrpo_stage import grpo_config

    fixed = {"output_dir": "/tmp/x", "use_cpu": True, "bf16": False, "activation_checkpointing": False}
    r = load_config("tiny", {"vsft.warmup_steps": 0.1, "vsft.trl": {"optim": "sgd", "max_steps": 7}})
    sft = trl_config(SFTConfig, r.vsft, **fixed)
    assert (sft.learning_rate, sft.warmup_steps, sft.optim.value) == (r.vsft.learning_rate, 0.1, "sgd")
    assert sft.max_steps == 7  # trl: wins over the section's own field
    assert trl_config(SFTConfig, r.vsft, max_steps=3, **fixed).max_steps == 3  # the stage's value wins
    bad = load_config("tiny", {"vsft.trl.not_a_field": 1})
    with pytest.raises(ConfigError, match="trl.not_a_field"):
        trl_config(SFTConfig, bad.vsft, **fixed)
    g = grpo_config(load_config("tiny", {"tgrpo.trl.num_completions_to_print": 2}), "/tmp/y")
    assert isinstance(g, GRPOConfig) and g.num_completions_to_print == 2
    assert (g.num_generations, g.beta, g.epsilon) == (4, 0.05, 0.2)  # the recipe's, not TRL's defaults
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config("tiny", {"tgrpo.trl": 3})
