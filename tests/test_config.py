"""Run configurations: TOML validated with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from and_toolkit.config import STAGES, load_config, parse_config
from and_toolkit.errors import ConfigError


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('name = "demo"\n[calibrate]\nrule = "reference"\n')
    cfg = load_config(path)
    assert cfg.name == "demo" and tuple(cfg.stages) == STAGES
    assert cfg.calibrate.rule == "reference" and cfg.record.k == 5


@pytest.mark.parametrize("text, key", [
    ('name = "x"\nbogus = 1\n', "bogus"),
    ('name = "x"\n[calibrate]\nthreshhold = 0.5\n', "calibrate.threshhold"),
    ('name = "x"\n[record]\nk = 0\n', "record.k"),
    ('name = "x"\nstages = ["probe", "dance"]\n', "stages.1"),
    ('[probe]\nkind = "esc50"\n', "name"),
])
def test_bad_keys_are_named(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_unknown_key_message_says_unknown() -> None:
    with pytest.raises(ConfigError, match="bogus: unknown key"):
        parse_config({"name": "x", "bogus": 1}, "cfg.toml")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def _error(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "x", **data}, "cfg.toml")
    return str(info.value)


@pytest.mark.parametrize("overrides, line", [
    ({"batch_sise": 16}, "targets.0.overrides.batch_sise: unknown key"),
    ({"cnn": {"chanels": [4, 8]}}, "targets.0.overrides.cnn.chanels: unknown key"),
    ({"lr": -1.0}, "targets.0.overrides.lr: Input should be greater than 0"),
    ({"yamnet_tuned_blocks": 2}, "targets.0.overrides: Value error, yamnet_tuned_blocks: only "
     "for arch 'yamnet'"),
])
def test_target_overrides_are_validated_at_load(overrides: dict[str, object], line: str) -> None:
    """A bad ``[[targets]] overrides`` entry is refused when the config is loaded (it used to
    surface as a raw TrainConfig traceback after the probe stage)."""
    err = _error({"targets": [{"id": "c", "arch": "cnn", "overrides": overrides}]})
    assert err.startswith("cfg.toml: invalid run configuration") and line in err


def test_target_overrides_are_validated_with_the_run_features() -> None:
    err = _error({"features": {"num_mel_bins": 16}, "targets": [
        {"id": "a", "arch": "ast", "overrides": {"ast": {"patch_size": 32}}}]})
    assert "targets.0.overrides.ast: Value error, patch_size: 32 exceeds the input" in err


@pytest.mark.parametrize("name", ["demo.toml", "esc50.toml"])
def test_shipped_configs_overrides_are_valid(name: str) -> None:
    cfg = load_config(Path(__file__).parents[1] / "configs" / name)
    assert any(t.overrides for t in cfg.targets)


@pytest.mark.parametrize("options, line", [
    ({"filename_colum": "file"}, "probe.folder_options.filename_colum: unknown key"),
    ({"fold_col": 3}, "probe.folder_options.fold_col: Input should be a valid string"),
    ({"unlisted": "keep"}, "probe.folder_options.unlisted: Input should be 'error' or 'drop'"),
    ({"csv": "x.csv"}, "probe.folder_options.csv: the labels CSV is probe.labels_csv"),
])
def test_folder_options_are_validated_at_load(options: dict[str, object], line: str) -> None:
    err = _error({"probe": {"kind": "folder", "folder": "/clips", "labels_csv": "l.csv",
                            "folder_options": options}})
    assert line in err


def test_folder_settings_only_for_a_folder_probe() -> None:
    err = _error({"probe": {"kind": "esc50", "folder_options": {"fold_col": "fold"}}})
    assert "probe.folder_options: only for kind = 'folder', not 'esc50'" in err


@pytest.mark.parametrize("source", [{"pretrained": "/models/mine"},
                                    {"factory": "pkg.mod:make"}])
@pytest.mark.parametrize("field, value", [("epochs", 3), ("overrides", {"batch_size": 16})])
def test_training_settings_on_a_users_model_are_refused(source: dict[str, str], field: str,
                                                        value: object) -> None:
    err = _error({"targets": [{"id": "m", **source, field: value}]})
    assert f"targets.0.{field}: target 'm' is a user's model" in err and "not trained here" in err


def test_online_is_only_for_pretrained() -> None:
    err = _error({"targets": [{"id": "c", "arch": "cnn", "online": True}]})
    assert "targets.0.online: only for pretrained" in err


def test_trained_tab_on_a_folder_without_folds_is_refused_at_load() -> None:
    folder = {"kind": "folder", "folder": "/clips"}
    err = _error({"probe": folder, "closed": {"tab_model": "trained"}})
    assert "closed.tab_model: 'trained' trains on the clips outside" in err
    assert "probe.folder_options.fold_col" in err
    # decidable only from the data: left to the probe stage
    parse_config({"name": "x", "closed": {"tab_model": "trained"}, "probe": {
        **folder, "labels_csv": "l.csv", "folder_options": {"fold_col": "fold"}}})
    # no stage trains it
    parse_config({"name": "x", "probe": folder, "stages": ["probe", "closed"],
                  "closed": {"tab_model": "trained", "methods": ["DB"]}})


def test_k_above_the_clip_count_names_the_field() -> None:
    record = parse_config({"name": "x", "record": {"k": 3, "extra_k": [8]}}).record
    record.check_clips(8, "probe")
    with pytest.raises(ConfigError, match=r"record.extra_k: K=8 exceeds the 7 clips .*--k"):
        record.check_clips(7, "probe")
    with pytest.raises(ConfigError, match=r"record.k: K=3 exceeds the 2 clips"):
        record.check_clips(2, "probe")
