"""The CLI's pieces that need no server: the config file, following logs, tables."""

import stat

import pytest
from click.testing import CliRunner
from gco import config
from gco.cli import _new_lines, cli, emit_table


def test_the_config_file_is_private_and_the_environment_overrides_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GCO_API_KEY", raising=False)
    monkeypatch.delenv("GCO_API_URL", raising=False)
    path = config.save(api_url="http://example.test", api_key='gco_a"b\\c')
    assert path == tmp_path / "gco" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.resolve() == config.Settings("http://example.test", 'gco_a"b\\c')
    monkeypatch.setenv("GCO_API_KEY", "gco_env")
    monkeypatch.setenv("GCO_API_URL", "http://env.test/")
    assert config.resolve() == config.Settings("http://env.test", "gco_env")


def test_follow_prints_only_new_lines():
    assert _new_lines([], ["a", "b"]) == ["a", "b"]
    assert _new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert _new_lines(["a", "b"], ["a", "b"]) == []
    assert _new_lines(["x"], ["y", "z"]) == ["y", "z"]  # the window moved past: all new


def test_tables_align_and_an_empty_one_says_so():
    runner = CliRunner()

    @cli.command("t-table", hidden=True)
    def table() -> None:
        emit_table([("a", None, 1), ("long name", True, 22)], ("name", "ok", "n"))

    try:
        out = runner.invoke(cli, ["t-table"]).output.splitlines()
    finally:
        cli.commands.pop("t-table")
    assert out == ["NAME       OK   N", "a          -    1", "long name  yes  22"]


def test_a_broken_config_file_is_a_usage_error_unless_the_environment_says_all(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GCO_API_KEY", raising=False)
    (tmp_path / "gco").mkdir()
    (tmp_path / "gco" / "config.toml").write_text("api_key = ")
    with pytest.raises(config.ConfigError, match="config.toml is not valid TOML"):
        config.resolve()
    monkeypatch.setenv("GCO_API_KEY", "gco_env")
    monkeypatch.setenv("GCO_API_URL", "http://env.test")
    assert config.resolve().api_key == "gco_env"
