import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_ENV"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_its_variables():
    env = {"DJANGO_ENV": "production", "SECRET_KEY": "", "ALLOWED_HOSTS": "", "DATABASE_URL": ""}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL" in result.stderr


def test_check_deploy_is_clean_in_production():
    env = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": "p" * 20 + "roduction-secret-key-with-enough-entropy-4f9c2a7e1b",
        "ALLOWED_HOSTS": "gpu.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "sqlite:////tmp/prod-check.sqlite3"),
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
