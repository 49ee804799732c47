"""SSH public keys in the account: validated like ssh-keygen reads them, fingerprinted the same
way, owner-scoped; every pod the owner starts gets them."""

import shutil
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from apps.accounts.models import SshKey
from apps.nodes.models import CommandType, NodeCommand
from apps.pods.ssh import ssh_command
from tests.factories import fund, make_host

pytestmark = pytest.mark.django_db


def generate(tmp_path: Path, kind: str = "ed25519", comment: str = "me@laptop") -> tuple[str, str]:
    """A real key pair from ssh-keygen: (public line, fingerprint as ssh-keygen shows it)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (apt-get install openssh-client)")
    path = tmp_path / f"id_{kind}"
    subprocess.run(  # noqa: S603 - fixed arguments
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    listed = subprocess.run(  # noqa: S603
        ["ssh-keygen", "-lf", f"{path}.pub"], check=True, capture_output=True, text=True
    ).stdout.split()
    return Path(f"{path}.pub").read_text().strip(), listed[1]


@pytest.fixture
def client(api_client, user):
    api_client.force_authenticate(user)
    return api_client


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_a_real_key_is_kept_with_ssh_keygens_fingerprint(client, tmp_path, kind):
    line, fingerprint = generate(tmp_path, kind)

    response = client.post("/api/v1/auth/ssh-keys", {"public_key": line}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["fingerprint"] == fingerprint
    assert body["name"] == "me@laptop" and body["public_key"] == line
    assert [k["id"] for k in client.get("/api/v1/auth/ssh-keys").json()] == [body["id"]]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "blank"),
        ("not a key", "Unsupported key type"),
        ("ssh-ed25519 !!!notbase64", "not valid base64"),
        (
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJlM8genKLuiithhLQ3W733VjJwZCrG0+9eblve/XqGt",
            "does not",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY----- abc", "private key"),
    ],
)
def test_bad_keys_are_refused_naming_the_field(client, text, why):
    response = client.post("/api/v1/auth/ssh-keys", {"public_key": text}, format="json")

    assert response.status_code == 400
    assert "public_key" in response.json()["error"]["fields"]
    if why != "blank":
        assert why in response.json()["error"]["fields"]["public_key"]
    assert not SshKey.objects.exists()


def test_the_same_key_twice_is_refused(client, tmp_path):
    line, _ = generate(tmp_path)
    client.post("/api/v1/auth/ssh-keys", {"public_key": line}, format="json")

    again = client.post("/api/v1/auth/ssh-keys", {"name": "x", "public_key": line}, format="json")

    assert again.status_code == 400 and "already" in again.json()["error"]["fields"]["public_key"]
    assert SshKey.objects.count() == 1


def test_keys_are_owner_scoped(client, api_client, other_user, tmp_path):
    line, _ = generate(tmp_path)
    key_id = client.post("/api/v1/auth/ssh-keys", {"public_key": line}, format="json").json()["id"]

    api_client.force_authenticate(other_user)
    assert api_client.get("/api/v1/auth/ssh-keys").json() == []
    assert api_client.delete(f"/api/v1/auth/ssh-keys/{key_id}").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.get("/api/v1/auth/ssh-keys").status_code == 401
    assert SshKey.objects.count() == 1


def test_pods_get_the_owners_keys(client, user, tmp_path):
    owner_client = client
    fund(user, 100_000_000)
    make_host()
    first, _ = generate(tmp_path, comment="one")
    second, _ = generate(tmp_path, "rsa", comment="two")
    for line in (first, second):
        owner_client.post("/api/v1/auth/ssh-keys", {"public_key": line}, format="json")

    pod = owner_client.post(
        "/api/v1/pods/",
        {
            "name": "p",
            "image": "img",
            "gpu_model": "H100 SXM",
            "gpu_count": 1,
            "ports": [{"container_port": 22}],
        },
        format="json",
    ).json()

    payload = NodeCommand.objects.get(type=CommandType.START_POD, payload__pod_id=pod["id"]).payload
    assert payload["env"]["PUBLIC_KEY"] == f"{first}\n{second}"
    assert payload["authorized_keys"] == [first, second]


def test_ssh_line_for_a_published_port_22():
    assert ssh_command({"22/tcp": "203.0.113.7:32768"}) == "ssh root@203.0.113.7 -p 32768"
    assert ssh_command({"22/tcp": "[2001:db8::1]:2222"}) == "ssh root@2001:db8::1 -p 2222"
    assert ssh_command({"8888/tcp": "203.0.113.7:1"}) is None


def test_portal_page_adds_and_removes_keys(user, tmp_path):
    line, fingerprint = generate(tmp_path)
    browser = Client()
    browser.force_login(user)

    added = browser.post("/ssh-keys/", {"name": "laptop", "public_key": line}, follow=True)
    assert added.status_code == 200 and fingerprint in added.content.decode()
    bad = browser.post("/ssh-keys/", {"name": "x", "public_key": "nope AAAA"})
    assert bad.status_code == 400 and "Unsupported key type" in bad.content.decode()
    key = SshKey.objects.get()
    browser.post(f"/ssh-keys/{key.pk}/delete")
    assert not SshKey.objects.exists()
