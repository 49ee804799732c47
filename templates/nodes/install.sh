#!/usr/bin/env bash
# GPU Cloud Orchestrator — host agent installer.
#
# Read me before you run me. Usage:
#   curl -sSL {{ server }}/api/v1/nodes/install.sh | bash -s -- --provider-key=pk_...
#
# What it does, in order:
#   1. checks for python3 (3.10+) with venv, and root (it writes a systemd unit);
#   2. creates a virtualenv in /opt/gco-agent/venv and installs the agent wheel served by
#      {{ server }} (pip fetches its dependencies: httpx, docker, nvidia-ml-py, websockets);
#   3. writes /etc/gco-agent/agent.env (mode 0600) with the server URL and your key;
#   4. writes and starts the systemd unit gco-agent.service.
# The agent registers this machine with the server, keeps its node token in
# /var/lib/gco-agent (0600), and runs the containers the server asks for through Docker.
set -euo pipefail

SERVER="{{ server }}"
PROVIDER_KEY=""
BOOTSTRAP_TOKEN=""
PREFIX="/opt/gco-agent"
STATE_DIR="/var/lib/gco-agent"
ENV_DIR="/etc/gco-agent"

die() { echo "install.sh: $*" >&2; exit 1; }

for arg in "$@"; do
  case "$arg" in
    --provider-key=*)    PROVIDER_KEY="${arg#*=}" ;;
    --bootstrap-token=*) BOOTSTRAP_TOKEN="${arg#*=}" ;;
    --server=*)          SERVER="${arg#*=}" ;;
    -h|--help)           sed -n '2,16p' "$0" 2>/dev/null || true; exit 0 ;;
    *)                   die "unknown argument: $arg (expected --provider-key=pk_… and --server=URL)" ;;
  esac
done

[ -n "$SERVER" ] || die "missing --server=URL: the control plane this agent reports to"
case "$SERVER" in http://*|https://*) ;; *) die "--server must be an http(s) URL, got: $SERVER" ;; esac
if [ -z "$PROVIDER_KEY" ] && [ -z "$BOOTSTRAP_TOKEN" ]; then
  die "missing --provider-key=pk_…: create one in the provider portal; it ties this machine to your account"
fi
if [ -n "$PROVIDER_KEY" ] && [ "${PROVIDER_KEY#pk_}" = "$PROVIDER_KEY" ]; then
  die "--provider-key must start with pk_ (got something else)"
fi
[ "$(id -u)" -eq 0 ] || die "run as root (it installs a systemd service): … | sudo bash -s -- …"
command -v python3 >/dev/null || die "python3 not found: install python3 and python3-venv"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 must be 3.10 or newer"
python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3-venv is missing: apt-get install python3-venv"
command -v docker >/dev/null || echo "install.sh: warning: docker not found; the node can register but not run pods" >&2

echo "==> installing the agent into $PREFIX"
mkdir -p "$PREFIX" "$STATE_DIR" "$ENV_DIR"
chmod 700 "$STATE_DIR" "$ENV_DIR"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
WHEEL_URL="$SERVER/api/v1/nodes/agent/{{ wheel }}"
TMP_WHEEL="$(mktemp -d)/{{ wheel }}"
curl -fsSL "$WHEEL_URL" -o "$TMP_WHEEL" || die "could not download $WHEEL_URL"
"$PREFIX/venv/bin/pip" install --quiet "$TMP_WHEEL"

echo "==> writing $ENV_DIR/agent.env"
umask 077
{
  echo "GPU_AGENT_SERVER_URL=$SERVER"
  echo "GPU_AGENT_STATE_DIR=$STATE_DIR"
  [ -n "$PROVIDER_KEY" ] && echo "GPU_AGENT_PROVIDER_KEY=$PROVIDER_KEY"
  [ -n "$BOOTSTRAP_TOKEN" ] && echo "GPU_AGENT_BOOTSTRAP_TOKEN=$BOOTSTRAP_TOKEN"
} > "$ENV_DIR/agent.env"

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  echo "==> installing gco-agent.service"
  cat > /etc/systemd/system/gco-agent.service <<UNIT
[Unit]
Description=GPU Cloud Orchestrator agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
EnvironmentFile=$ENV_DIR/agent.env
ExecStart=$PREFIX/venv/bin/python -m agent
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now gco-agent.service
  echo "==> done: journalctl -u gco-agent -f shows the agent's log"
else
  echo "==> no systemd here; start the agent yourself:"
  echo "    set -a; . $ENV_DIR/agent.env; set +a; $PREFIX/venv/bin/python -m agent"
fi
