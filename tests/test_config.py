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
