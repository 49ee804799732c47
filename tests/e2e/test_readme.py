"""The README's API session, run as written: its shell blocks (between `<!-- readme-session -->`
markers) run in one bash, in order, against a stack like `make run`'s — the live server, a real
agent on the real Docker engine and the Stripe Checkout stand-in delivering signed webhooks —
and what each block prints must match the JSON the README shows after it: the same keys and
types, the same values except ids, times and the parts the README elides with "…".

Two things differ from a user's machine, by substitution: the server's address (the live
server's port, not 8000) and the image `busybox` (imported locally: no registry here)."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apps.billing.stripe_standin import RunningStandin
from apps.nodes.models import Node, NodeStatus
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

README = Path(__file__).resolve().parents[2] / "README.md"
STANDIN_URL = "http://127.0.0.1:7810"  # make run's stand-in, as the README shows it
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def readme_session() -> list[tuple[str, str | None]]:
    """[(shell block, the JSON shown after it or None)] in the README's order."""
    text = README.read_text()
    start = text.index("<!-- readme-session -->")
    end = text.index("<!-- /readme-session -->")
    steps: list[tuple[str, str | None]] = []
    for lang, body in BLOCK.findall(text[start:end]):
        if lang == "sh":
            steps.append((body, None))
        elif lang == "json":
            assert steps and steps[-1][1] is None, "a json block must follow a sh block"
            steps[-1] = (steps[-1][0], body)
    return steps


def json_values(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    values, at = [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


def mismatches(shown: Any, got: Any, where: str = "$") -> list[str]:
    """How `got` differs from what the README shows (empty: it matches)."""
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return [f"{where}: README shows an object, got {got!r}"]
        if set(shown) != set(got):
            return [f"{where}: keys {sorted(got)} != README's {sorted(shown)}"]
        return [m for k in shown for m in mismatches(shown[k], got[k], f"{where}.{k}")]
    if isinstance(shown, list):
        if not isinstance(got, list) or len(got) != len(shown):
            return [f"{where}: README shows {len(shown)} items, got {got!r}"]
        return [
            m
            for i, (s, g) in enumerate(zip(shown, got, strict=True))
            for m in mismatches(s, g, f"{where}[{i}]")
        ]
    if isinstance(shown, str) and isinstance(got, str):
        if "…" in shown:
            prefix = shown.split("…", 1)[0]
            return [] if got.startswith(prefix) else [f"{where}: {got!r} !~ {shown!r}"]
        for volatile in (UUID, TIMESTAMP):
            if volatile.match(shown):
                return [] if volatile.match(got) else [f"{where}: {got!r} is not like {shown!r}"]
    if type(shown) is not type(got) or shown != got:
        return [f"{where}: got {got!r}, README shows {shown!r}"]
    return []


def test_the_readme_session_runs_as_written(
    live_server, settings, agent_env, busybox_image, cleanup_containers
):
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("the README's session needs curl and jq")
    secret, key = "whsec_readme_0123456789", "sk_test_readme_0123456789"
    with RunningStandin(
        api_key=key, webhook_secret=secret, webhook_url=f"{live_server.url}/webhooks/stripe"
    ) as standin:
        settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = key, secret
        settings.STRIPE_API_BASE = standin.url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        agent_env()
        wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).exists(), "node ONLINE")

        steps = readme_session()
        assert len(steps) >= 6 and all(shown is not None for _, shown in steps)
        host = live_server.url.removeprefix("http://")
        script = ["set -eo pipefail"]
        for index, (shell, _) in enumerate(steps):
            shell = shell.replace("localhost:8000", host)
            shell = shell.replace('"image": "busybox"', f'"image": "{busybox_image}"')
            script += [shell, f"printf '\\n@@step {index}@@\\n'"]
        run = subprocess.run(
            ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, (run.stdout, run.stderr)

    printed = re.split(r"\n?@@step \d+@@\n", run.stdout.replace(standin.url, STANDIN_URL))
    problems = []
    for index, (shell, shown) in enumerate(steps):
        assert shown is not None
        got = json_values(printed[index])
        problems += [
            f"step {index} ({shell.splitlines()[0]}): {m}"
            for m in mismatches(json_values(shown), got)
        ]
    assert not problems, "\n".join([*problems, "printed:", run.stdout])


def test_the_comparison_catches_what_differs():
    shown = json_values('{"id": "0b7a44f4-8f3c-4c52-9d36-5a8f0e2d6c11", "key": "gco_…", "n": 1}')[0]
    same = {"id": "5d0f3c2e-6b1a-4f7e-8c9d-2a3b4c5d6e7f", "key": "gco_abc", "n": 1}
    assert mismatches(shown, same) == []
    assert mismatches(shown, {**same, "extra": 1})  # a key more
    assert mismatches(shown, {**same, "key": "sk_abc"})  # the shown prefix differs
    assert mismatches(shown, {**same, "id": "not-a-uuid"})
    assert mismatches(shown, {**same, "n": "1"})  # a type differs
    assert mismatches({"status": "RUNNING"}, {"status": "FAILED"})  # a status differs
    error = {"error": {"status": 402, "code": "payment_required", "message": "m"}}
    assert mismatches({"status": "STOPPING"}, error)
