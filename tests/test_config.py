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
