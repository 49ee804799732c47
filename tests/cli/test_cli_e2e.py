"""The whole customer path through the `gco` command, run as a subprocess against the live
server with a real agent on the real Docker engine: login → gpus → topup (paid on the Stripe
Checkout stand-in, credited by its signed webhook) → pods create (waits, with progress) → logs
(and logs -f) → stop → balance. `--json` parses; a 4xx is exit 4 with the server's message."""

import json
import os
import stat
import subprocess
import sys
import uuid

import httpx
import pytest

from apps.billing.stripe_standin import RunningStandin
from apps.nodes.models import Node, NodeStatus
from apps.nodes.services import node_drain
from apps.pods.models import Pod, PodStatus
from tests.factories import make_node
from tests.support import ROOT, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

WEBHOOK_SECRET = "whsec_cli_e2e_0123456789abcdef"
STRIPE_KEY = "sk_test_cli_e2e_0123456789"


@pytest.fixture
def standin(live_server, settings):
    with RunningStandin(
        api_key=STRIPE_KEY,
        webhook_secret=WEBHOOK_SECRET,
        webhook_url=f"{live_server.url}/webhooks/stripe",
    ) as running:
        settings.STRIPE_SECRET_KEY = STRIPE_KEY
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_API_BASE = running.url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        yield running


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def test_the_customer_path_through_the_cli(
    gco, gco_env, live_server, standin, user, agent_env, busybox_image, cleanup_containers
):
    url = live_server.url
    agent_env()
    agent_node = wait_for(
        lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE"
    )

    # Not logged in yet: a distinct exit code, and a hint.
    missing = gco("balance", GCO_API_URL=url)
    assert missing.returncode == 3 and "gco login" in missing.stderr

    # login: email and password (read from stdin, never on the command line) make a key.
    login = ok(gco("--api-url", url, "login", "--email", user.email, stdin="s3cret-pass-1\n"))
    assert user.email in login.stdout
    config = ROOT / gco_env["XDG_CONFIG_HOME"] / "gco" / "config.toml"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert f'api_url = "{url}"' in config.read_text()
    assert "s3cret" not in config.read_text()  # the key is kept, never the password

    # gpus: the price list. The agent's host has no GPU; a registered GPU host shows, until an
    # operator drains it (then this test's CPU pod can only go to the agent's node).
    gpu_host = make_node("gpu-host", gpus=2, price=690_000)
    gpus = json.loads(ok(gco("gpus", "--json")).stdout)
    assert [(g["gpu_model"], g["free_gpus"], g["price_per_gpu_hour_usd"]) for g in gpus] == [
        ("RTX 4090", 2, "0.69")
    ]
    table = ok(gco("gpus")).stdout.splitlines()
    assert table[0].split()[:4] == ["GPU", "VRAM", "FREE", "USD/GPU-H"]
    assert table[1].split()[:5] == ["RTX", "4090", "23", "GB", "2"]
    node_drain(node=gpu_host)

    # A 4xx: exit 4 with the server's own message on stderr (no money yet).
    broke = gco(
        "pods", "create", "--name", "x", "--image", busybox_image, "--gpu", "CPU", "--count", "0"
    )
    assert broke.returncode == 4, (broke.stdout, broke.stderr)
    assert "gco: error 402 payment_required:" in broke.stderr
    assert broke.stdout == ""

    # topup prints the Checkout page; paying it with the test card credits the wallet.
    checkout = ok(gco("topup", "25.00")).stdout.strip()
    assert checkout.startswith(f"{standin.url}/c/pay/cs_test_")
    declined = httpx.post(
        checkout, data={"card_number": "4000000000000002"}, headers={"Accept": "application/json"}
    )
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "card_declined"
    paid = httpx.post(checkout, data={"card_number": "4242 4242 4242 4242"})
    assert paid.status_code == 303
    assert json.loads(ok(gco("balance", "--json")).stdout) == {
        "balance_micros": 25_000_000,
        "balance_usd": "25.00",
        "currency": "USD",
    }

    # pods create waits until RUNNING, showing progress on stderr; --json on stdout.
    created = ok(
        gco(
            "pods",
            "create",
            "--name",
            "cli-e2e",
            "--image",
            busybox_image,
            "--gpu",
            "CPU",
            "--count",
            "0",
            "--command",
            "sh -c 'echo hello from the cli; sleep 300'",
            "--idempotency-key",
            "cli-e2e-1",
            "--json",
        )
    )
    pod = json.loads(created.stdout)
    assert pod["status"] == "RUNNING" and pod["name"] == "cli-e2e"
    assert f"pod {pod['id']}: RUNNING" in created.stderr
    assert Pod.objects.get(pk=pod["id"]).node_id == agent_node.pk

    listed = json.loads(ok(gco("pods", "list", "--json")).stdout)
    assert [p["id"] for p in listed] == [pod["id"]]
    table = ok(gco("pods", "list")).stdout
    assert pod["id"] in table and "RUNNING" in table
    assert json.loads(ok(gco("pods", "get", pod["id"], "--json")).stdout)["id"] == pod["id"]

    logs = ok(gco("pods", "logs", pod["id"]))
    assert "hello from the cli" in logs.stdout
    assert json.loads(ok(gco("pods", "logs", pod["id"], "--json")).stdout)["pod_id"] == pod["id"]

    # logs -f prints the log, then follows until the pod stops.
    follow = subprocess.Popen(
        [sys.executable, "-m", "gco", "pods", "logs", "-f", "--interval", "0.5", pod["id"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=gco_env,
        cwd=ROOT,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline().strip() == "hello from the cli"
        stopped = json.loads(ok(gco("pods", "stop", pod["id"], "--json")).stdout)
        assert stopped["status"] in ("STOPPING", "STOPPED")
        assert follow.wait(timeout=120) == 0, follow.stderr.read() if follow.stderr else ""
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    wait_for(lambda: Pod.objects.get(pk=pod["id"]).status == PodStatus.STOPPED, "pod STOPPED")

    balance = json.loads(ok(gco("balance", "--json")).stdout)
    assert 0 < balance["balance_micros"] <= 25_000_000
    assert ok(gco("balance")).stdout.strip() == f"{balance['balance_usd']} USD"

    # Not found: exit 4 with the server's message.
    ghost = gco("pods", "get", str(uuid.uuid4()))
    assert ghost.returncode == 4 and "gco: error 404" in ghost.stderr
    assert "No Pod matches" in ghost.stderr


def test_keys_login_with_a_key_and_exit_codes(gco, gco_env, live_server, user):
    from apps.accounts.services import api_key_create

    url = live_server.url
    key = api_key_create(user=user, name="first").raw_key
    bad = gco("--api-url", url, "login", stdin="gco_not_a_real_key\n")
    assert bad.returncode == 4 and "gco: error 401" in bad.stderr
    ok(gco("--api-url", url, "login", stdin=key + "\n"))

    created = json.loads(ok(gco("keys", "create", "ci", "--json")).stdout)
    assert created["key"].startswith("gco_") and created["name"] == "ci"
    names = {k["name"] for k in json.loads(ok(gco("keys", "--json")).stdout)}
    assert names == {"first", "ci"}
    ok(gco("keys", "revoke", created["id"]))
    revoked = gco("balance", GCO_API_KEY=created["key"])  # the env var overrides the config
    assert revoked.returncode == 4 and "gco: error 401" in revoked.stderr
    assert "first" in ok(gco("keys", "list")).stdout

    # The catalog parses (empty or not), and a bad command line is exit 2.
    assert isinstance(json.loads(ok(gco("models", "list", "--json")).stdout), list)
    assert isinstance(json.loads(ok(gco("models", "deployments", "--json")).stdout), list)
    usage = gco("pods", "create", "--name", "x")
    assert usage.returncode == 2 and "--image" in usage.stderr
    # The SDK is the same calls as a library.
    from gco import ApiError, Client, NetworkError

    with Client(api_key=key, api_url=url) as client:
        assert client.balance().balance_micros == 0
        assert {k.name for k in client.keys.list()} == {"first", "ci"}
        with pytest.raises(ApiError) as refused:
            client.pods.get(uuid.uuid4())
        assert (refused.value.status, refused.value.is_client_error) == (404, True)
        with pytest.raises(ApiError) as invalid:
            client.pods.create(name="x", image="busybox", gpu_model="CPU", gpu_count=-1)
        assert invalid.value.status == 400 and "gpu_count" in invalid.value.fields
    with pytest.raises(NetworkError), Client(api_key=key, api_url="http://127.0.0.1:9") as down:
        down.balance()

    # An unreachable server: exit 5.
    down = gco("balance", GCO_API_URL="http://127.0.0.1:9")
    assert down.returncode == 5 and "cannot reach" in down.stderr
