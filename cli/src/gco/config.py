"""Where the CLI keeps its API key: `$XDG_CONFIG_HOME/gco/config.toml` (else
`~/.config/gco/config.toml`), mode 0600. GCO_API_KEY and GCO_API_URL override it."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ConfigError(ValueError):
    """The config file cannot be read."""


@dataclass(frozen=True)
class Settings:
    api_url: str
    api_key: str | None


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gco" / "config.toml"


def load() -> dict[str, str]:
    path = config_path()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def save(*, api_url: str, api_key: str) -> Path:
    """Write the config, readable by its owner only (the key is a secret)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = f"api_url = {_toml_string(api_url)}\napi_key = {_toml_string(api_key)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an older file may have been wider
    return path


def resolve(*, api_key: str | None = None, api_url: str | None = None) -> Settings:
    """Explicit arguments, then GCO_API_KEY / GCO_API_URL, then the config file."""
    url = api_url or os.environ.get("GCO_API_URL")
    key = api_key or os.environ.get("GCO_API_KEY")
    if not (url and key):  # the file only when it is needed (it may not exist, or be broken)
        stored = load()
        url = url or stored.get("api_url")
        key = key or stored.get("api_key")
    url = url or DEFAULT_API_URL
    return Settings(api_url=url.rstrip("/"), api_key=key or None)
