"""Memory and CPU footprint of the running agent.

Starts ``python -m agent`` against a server, samples its RSS (``/proc/<pid>/status`` VmRSS) and
CPU time (``/proc/<pid>/stat`` utime + stime) for N seconds, stops it with SIGTERM and prints
peak RSS, mean RSS and CPU % over the window. Linux only.

    python bench/agent_footprint.py --server http://127.0.0.1:8000 --token pk_… --seconds 60
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its closing paren are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="server base URL")
    parser.add_argument("--token", required=True, help="registration token (pk_… or bootstrap)")
    parser.add_argument("--seconds", type=float, default=60.0, help="sampling window (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, help="sampling period in seconds")
    parser.add_argument("--heartbeat-interval", type=float, default=None)
    parser.add_argument("--python", default=sys.executable, help="interpreter running the agent")
    args = parser.parse_args()

    state_dir = tempfile.mkdtemp(prefix="gco-agent-bench-")
    env = {
        **os.environ,
        "GPU_AGENT_SERVER_URL": args.server,
        "GPU_AGENT_BOOTSTRAP_TOKEN": args.token,
        "GPU_AGENT_STATE_DIR": state_dir,
        "GPU_AGENT_NETWORK_MODE": os.environ.get("GPU_AGENT_NETWORK_MODE", "none"),
    }
    env.pop("GPU_AGENT_PROVIDER_KEY", None)
    command = [args.python, "-m", "agent"]
    if args.heartbeat_interval is not None:
        command += ["--heartbeat-interval", str(args.heartbeat_interval)]

    log_path = Path(state_dir) / "agent.log"
    with log_path.open("w") as log_file:
        agent = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=log_file)
        hz = os.sysconf("SC_CLK_TCK")
        samples: list[int] = []
        try:
            start_ticks = cpu_ticks(agent.pid) or 0
            started = time.monotonic()
            deadline = started + args.seconds
            next_sample = started
            while time.monotonic() < deadline and agent.poll() is None:
                rss = rss_kb(agent.pid)
                if rss is not None:
                    samples.append(rss)
                next_sample += args.interval
                time.sleep(max(0.0, next_sample - time.monotonic()))
            end_ticks = cpu_ticks(agent.pid)
            elapsed = time.monotonic() - started
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()

    if not samples or end_ticks is None:
        print(f"agent exited early (code {agent.returncode}); its log: {log_path}")
        print(log_path.read_text()[-2000:])
        return 1
    cpu_s = (end_ticks - start_ticks) / hz
    print(f"window            {elapsed:.1f} s, {len(samples)} samples")
    print(f"peak RSS          {max(samples) / 1024:.1f} MB")
    print(f"mean RSS          {sum(samples) / len(samples) / 1024:.1f} MB")
    print(f"CPU               {100.0 * cpu_s / elapsed:.2f} % of one core ({cpu_s:.2f} s)")
    print(f"agent exit code   {agent.returncode} (after SIGTERM)")
    print(f"agent log         {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
