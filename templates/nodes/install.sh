#!/usr/bin/env bash
# GPU Cloud Orchestrator — host agent installer.
#
# Read me before you run me. The enrolment key never goes on the command line, where `ps` and
# your shell history would keep it: give it in the environment or on standard input.
#
#   read -rs GCO_PROVIDER_KEY && export GCO_PROVIDER_KEY      # paste pk_…, then Enter
#   curl -fsSL {{ server }}/api/v1/nodes/install.sh | sudo -E bash
# or, with the key in a file:
#   curl -fsSLO {{ server }}/api/v1/nodes/install.sh
#   sudo bash install.sh --key-stdin < provider-key.txt
#
# What it does, in order:
#   1. checks for python3 (3.10+) and installs python3-venv if it is missing (apt);
#   2. downloads the agent wheel and the lock of its dependencies from {{ server }} and checks
#      both against the SHA-256 digests pinned below, before it installs anything;
#   3. creates a virtualenv in /opt/gco-agent/venv, installs the dependencies with
#      `pip install --require-hashes` from the lock, then the verified wheel;
#   4. writes /etc/gco-agent/agent.env (mode 0600) with the server URL and your key;
#   5. starts the agent: the systemd unit gco-agent.service where systemd runs, else in the
#      background with nohup (pid in /var/lib/gco-agent/agent.pid, log beside it).
# The agent registers this machine with the server, keeps its node token in
# /var/lib/gco-agent (0600), and runs the containers the server asks for through Docker.
#
# Everything happens inside gco_install, called on the very last line with an end marker: a
# download cut short anywhere defines nothing, or calls nothing, so it runs nothing.
#
# Environment:
#   GCO_PROVIDER_KEY      your provider key (pk_…), or
#   GCO_BOOTSTRAP_TOKEN   a platform bootstrap or instance token (single-use, expires)
#   GCO_SERVER            the control plane (default {{ server }}); also --server=URL
#   GCO_INSTALL_ROOT      install under this directory instead of / (no root needed; no
#                         systemd, no apt)
#   GCO_SERVICE           auto (default) | systemd | nohup: how the agent is started

gco_install() {
  set -euo pipefail
  local end_marker="--end-of-script"
  if [ "$#" -eq 0 ] || [ "${!#}" != "$end_marker" ]; then
    echo "install.sh: the script is incomplete (no end marker): nothing was done" >&2
    return 1
  fi
  set -- "${@:1:$(($# - 1))}"

  local server="${GCO_SERVER:-{{ server }}}"
  local wheel_name="{{ wheel }}"
  local wheel_sha256="{{ wheel_sha256 }}"
  local lock_name="{{ lock }}"
  local lock_sha256="{{ lock_sha256 }}"
  local key="${GCO_PROVIDER_KEY:-${GCO_BOOTSTRAP_TOKEN:-}}"
  local key_stdin=0

  die() { echo "install.sh: $*" >&2; exit 1; }

  local arg
  for arg in "$@"; do
    case "$arg" in
      --server=*) server="${arg#*=}" ;;
      --key-stdin) key_stdin=1 ;;
      --provider-key=*|--bootstrap-token=*)
        die "never pass the key as an argument (ps and shell history keep it): export GCO_PROVIDER_KEY, or use --key-stdin < file" ;;
      -h|--help) sed -n '2,35p' "$0" 2>/dev/null || true; return 0 ;;
      *) die "unknown argument: $arg (expected --server=URL or --key-stdin)" ;;
    esac
  done
  if [ "$key_stdin" -eq 1 ]; then
    IFS= read -r key || [ -n "$key" ] || die "--key-stdin: nothing on standard input"
  elif [ -z "$key" ] && [ -t 0 ]; then
    IFS= read -rs -p "Provider key (pk_…): " key; echo
  fi
  key="${key//[[:space:]]/}"
  [ -n "$key" ] || die "no enrolment key: export GCO_PROVIDER_KEY=pk_… (create one in the provider portal) or pass it with --key-stdin"

  server="${server%/}"
  case "$server" in http://*|https://*) ;; *) die "the server must be an http(s) URL, got: $server" ;; esac

  local root="${GCO_INSTALL_ROOT:-}"
  local prefix="$root/opt/gco-agent" state_dir="$root/var/lib/gco-agent" env_dir="$root/etc/gco-agent"
  local service="${GCO_SERVICE:-auto}"
  if [ "$service" = auto ]; then
    service=nohup
    if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      service=systemd
    fi
  fi
  case "$service" in systemd|nohup) ;; *) die "GCO_SERVICE must be auto, systemd or nohup, got: $service" ;; esac
  if [ -z "$root" ] || [ "$service" = systemd ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (it writes under / and may install packages): … | sudo -E bash"
  fi

  command -v python3 >/dev/null || die "python3 not found: install python3 (3.10 or newer)"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 must be 3.10 or newer"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      echo "==> installing python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3-venv is missing and could not be installed: apt-get install python3-venv"
  fi
  command -v curl >/dev/null || die "curl not found"
  command -v docker >/dev/null || echo "install.sh: warning: docker not found; the node can register but not run pods" >&2

  sha256_of() {
    if command -v sha256sum >/dev/null; then
      sha256sum "$1" | cut -d' ' -f1
    else
      python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
    fi
  }
  local download
  download="$(mktemp -d)"
  # shellcheck disable=SC2064 # expanded now: the function's locals are gone at exit
  trap "rm -rf -- '$download'" EXIT
  echo "==> downloading and verifying the agent"
  curl -fsSL "$server/api/v1/nodes/agent/$wheel_name" -o "$download/$wheel_name" || die "could not download the agent wheel from $server"
  curl -fsSL "$server/api/v1/nodes/agent/$lock_name" -o "$download/$lock_name" || die "could not download the dependency lock from $server"
  local got
  got="$(sha256_of "$download/$wheel_name")"
  [ "$got" = "$wheel_sha256" ] || die "the agent wheel's SHA-256 is $got, not $wheel_sha256 as pinned in this script: nothing was installed"
  got="$(sha256_of "$download/$lock_name")"
  [ "$got" = "$lock_sha256" ] || die "the dependency lock's SHA-256 is $got, not $lock_sha256 as pinned in this script: nothing was installed"

  echo "==> installing the agent into $prefix"
  mkdir -p "$prefix" "$state_dir" "$env_dir"
  chmod 700 "$state_dir" "$env_dir"
  python3 -m venv "$prefix/venv"
  "$prefix/venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$download/$lock_name"
  "$prefix/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$download/$wheel_name"

  echo "==> writing $env_dir/agent.env (0600)"
  local key_var=GPU_AGENT_BOOTSTRAP_TOKEN
  case "$key" in pk_*) key_var=GPU_AGENT_PROVIDER_KEY ;; esac
  (
    umask 077
    printf 'GPU_AGENT_SERVER_URL=%s\nGPU_AGENT_STATE_DIR=%s\n%s=%s\n' "$server" "$state_dir" "$key_var" "$key" > "$env_dir/agent.env"
  )
  chmod 600 "$env_dir/agent.env"

  if [ "$service" = systemd ]; then
    echo "==> installing gco-agent.service"
    cat > /etc/systemd/system/gco-agent.service <<UNIT
[Unit]
Description=GPU Cloud Orchestrator agent
After=network-online.target docker.service
Wants=network-online.target

[Service]
EnvironmentFile=$env_dir/agent.env
ExecStart=$prefix/venv/bin/python -m agent
Restart=always
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable gco-agent.service >/dev/null
    systemctl restart gco-agent.service
    echo "==> done: journalctl -u gco-agent -f shows the agent's log"
  else
    local pid_file="$state_dir/agent.pid" log_file="$state_dir/agent.log" old
    if [ -f "$pid_file" ]; then
      old="$(cat "$pid_file")"
      if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
        echo "==> stopping the agent this installer started before (pid $old)"
        kill -TERM "$old" || true
      fi
    fi
    echo "==> starting the agent in the background (no systemd)"
    (
      unset GCO_PROVIDER_KEY GCO_BOOTSTRAP_TOKEN
      set -a
      # shellcheck disable=SC1091
      . "$env_dir/agent.env"
      set +a
      cd "$state_dir"
      exec nohup "$prefix/venv/bin/python" -m agent >>"$log_file" 2>&1 </dev/null
    ) &
    echo "$!" > "$pid_file"
    echo "==> done: pid $(cat "$pid_file"), log $log_file"
  fi
}

gco_install "$@" --end-of-script
