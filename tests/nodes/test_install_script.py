"""The real rendered install.sh, run by bash as a subprocess in a temporary root (GCO_INSTALL_ROOT,
GCO_SERVICE=nohup, so no root-owned path and no systemd): a wheel or lock with one flipped byte,
or a script cut at a random byte, installs and runs nothing; a whole script installs the agent
from the hashed lock, starts it in the background, and the key shows in neither `ps` nor the
shell's history."""

import hashlib
import os
import random
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.nodes.models import Node, NodeRegistration

pytestmark = pytest.mark.django_db(transaction=True)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - a local test server
        return response.read()


@pytest.fixture
def server(live_server, settings) -> str:
    settings.NODE_BOOTSTRAP_TOKEN = f"bt_{secrets.token_urlsafe(24)}"
    settings.SITE_URL = live_server.url  # what install.sh pins as its server
    return live_server.url


@pytest.fixture
def script(server, tmp_path) -> Path:
    path = tmp_path / "install.sh"
    path.write_bytes(fetch(f"{server}/api/v1/nodes/install.sh"))
    return path


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "tmp"),
        "GCO_INSTALL_ROOT": str(tmp_path / "root"),
        "GCO_SERVICE": "nohup",
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "PYENV"))},
        **extra,
    }


def run_script(path: Path, env: dict[str, str], *args: str, stdin: bytes = b"", bash=()):
    return subprocess.run(  # noqa: S603 - our own script
        ["bash", *bash, str(path), *args],  # noqa: S607
        input=stdin,
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )


def leftovers(tmp_path: Path) -> list[str]:
    """Everything the installer could have written: the install root and its downloads."""
    found = []
    for folder in (tmp_path / "root", tmp_path / "tmp"):
        if folder.exists():
            found += [str(p.relative_to(tmp_path)) for p in folder.rglob("*")]
    return found


def test_the_wheel_digest_is_served_beside_it_and_pinned_in_the_script(server, script):
    text = script.read_text()
    wheel = text.split('wheel_name="')[1].split('"')[0]
    pinned = text.split('wheel_sha256="')[1].split('"')[0]
    served = fetch(f"{server}/api/v1/nodes/agent/{wheel}.sha256").decode().split()
    assert served == [pinned, wheel]
    assert hashlib.sha256(fetch(f"{server}/api/v1/nodes/agent/{wheel}")).hexdigest() == pinned
    lock = fetch(f"{server}/api/v1/nodes/agent/requirements.lock")
    assert hashlib.sha256(lock).hexdigest() in text
    assert b"--hash=sha256:" in lock and b"httpx==" in lock
    assert text.rstrip().endswith('gco_install "$@" --end-of-script')


# What a cut script may execute at most: the call on the last line, cut short, and the
# function's refusal of a call without the end marker. Traced with bash -x.
REFUSAL_ONLY = {"gco_install", "set", "local", "[", "echo", "return"}


def test_a_script_cut_at_any_byte_installs_and_runs_nothing(script, tmp_path):
    whole = script.read_bytes()
    last_line = whole.rstrip().rfind(b"\n") + 1
    rng = random.Random(19)
    cuts = sorted(
        {rng.randrange(1, len(whole) - 1) for _ in range(12)}
        | set(range(last_line, len(whole.rstrip())))  # every cut inside the last line
    )
    cut_path = tmp_path / "cut.sh"
    env = env_for(tmp_path, GCO_BOOTSTRAP_TOKEN="bt_never-used")
    for cut in cuts:
        cut_path.write_bytes(whole[:cut])
        result = run_script(cut_path, env, bash=("-x",))
        # bash -x writes "+ command args" (PS4; bash ignores a PS4 from the env under root)
        traced = [
            match.group(1).strip("'")
            for match in re.finditer(r"^\++ (\S+)", result.stderr.decode(), re.MULTILINE)
        ]
        # (a cut inside the name itself calls a command that does not exist: bash says so)
        ran = {w for w in traced if w not in REFUSAL_ONLY and not "gco_install".startswith(w)}
        assert not ran, (cut, traced)
        assert result.stdout == b"", cut
        assert leftovers(tmp_path) == [], (cut, result.stderr.decode()[-300:])
    assert Node.objects.count() == 0


class TamperingMirror:
    """A mirror in front of the real server that flips one byte of one file it passes on."""

    def __init__(self, upstream: str, tampered: str) -> None:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = bytearray(fetch(upstream + self.path))
                if self.path.endswith(tampered):
                    offset = random.Random(7).randrange(len(body))
                    body[offset] ^= 0x01
                    mirror.flipped.append(offset)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(bytes(body))

            def log_message(self, *args: object) -> None:
                pass

        self.flipped: list[int] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("tampered", [".whl", "requirements.lock"])
def test_a_download_with_one_flipped_byte_installs_and_runs_nothing(
    server, script, tmp_path, tampered
):
    mirror = TamperingMirror(server, tampered)
    try:
        result = run_script(
            script, env_for(tmp_path, GCO_SERVER=mirror.url, GCO_BOOTSTRAP_TOKEN="bt_never-used")
        )
    finally:
        mirror.close()
    assert mirror.flipped, "the mirror passed the file on"
    assert result.returncode != 0
    assert b"SHA-256" in result.stderr and b"nothing was installed" in result.stderr
    assert leftovers(tmp_path) == []
    assert Node.objects.count() == 0


def test_a_key_on_the_command_line_is_refused(script, tmp_path):
    result = run_script(script, env_for(tmp_path), "--provider-key=pk_secret")
    assert result.returncode != 0 and b"never pass the key as an argument" in result.stderr
    assert leftovers(tmp_path) == []


def _agent_pid(tmp_path: Path) -> int:
    return int((tmp_path / "root/var/lib/gco-agent/agent.pid").read_text())


@pytest.fixture
def stop_agent(tmp_path) -> Iterator[None]:
    yield
    pid_file = tmp_path / "root/var/lib/gco-agent/agent.pid"
    if pid_file.exists():
        try:
            os.kill(_agent_pid(tmp_path), signal.SIGTERM)
        except ProcessLookupError:
            pass


def test_a_whole_script_installs_and_starts_the_agent_keeping_the_key_out_of_ps_and_history(
    server, script, tmp_path, settings, stop_agent
):
    # given the key in a file, and an interactive shell with its own history file
    key = settings.NODE_BOOTSTRAP_TOKEN
    key_file = tmp_path / "key.txt"
    key_file.write_text(key + "\n")
    history = tmp_path / "history"
    env = env_for(tmp_path, HISTFILE=str(history), HISTSIZE="100", HISTFILESIZE="100")

    # when the operator runs the installer from that shell, the key on standard input
    shell = subprocess.run(  # noqa: S603
        ["bash", "--norc", "--noprofile", "-i"],  # noqa: S607
        input=f"bash {script} --key-stdin < {key_file}\nexit $?\n".encode(),
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )

    # then the agent is installed from the lock and running in the background, registered
    assert shell.returncode == 0, shell.stderr.decode()[-2000:]
    agent_env = tmp_path / "root/etc/gco-agent/agent.env"
    assert agent_env.stat().st_mode & 0o777 == 0o600
    assert f"GPU_AGENT_BOOTSTRAP_TOKEN={key}" in agent_env.read_text()
    deadline = time.monotonic() + 120
    while not Node.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = tmp_path / "root/var/lib/gco-agent/agent.log"
    assert Node.objects.count() == 1, log.read_text()[-2000:] if log.exists() else "no log"
    assert NodeRegistration.objects.get().credential == "bootstrap"
    pid = _agent_pid(tmp_path)
    assert b"agent" in Path(f"/proc/{pid}/cmdline").read_bytes()

    # and the key is in neither the processes' command lines nor the shell's history
    listing = subprocess.run(
        ["ps", "-eo", "pid,args"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(pid) in listing and key not in listing
    assert "install.sh --key-stdin" in history.read_text() and key not in history.read_text()
