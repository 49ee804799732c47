# Over 450 lines: one upstream protocol over one offer table; splitting would scatter it.
"""A Vast.ai look-alike (fact sheet §1, quirks of §6): offers consumed on rent, the plural
`instances` key on get-one, 25-per-page v1 listing with `next_token`, `actual_status`
null → loading → running with `ports` (HostPort strings) only when running, a trailing
newline in `public_ipaddr`, plain-text 429s."""

from __future__ import annotations

import base64
import random
import re
import shlex
import time
import uuid
from typing import Any

from apps.sourcing.adapters.gpu_names import BY_CANONICAL, GPU_TABLE, from_vast
from apps.sourcing.simulators.base import Simulator
from apps.sourcing.simulators.containers import SimPort, SimWorkload
from apps.sourcing.simulators.machines import SimInstance
from apps.sourcing.simulators.markets import BASE_PRICE
from apps.sourcing.simulators.wire import SimRequest, SimResponse

PAGE = 25
LOCATIONS = ("Ohio, US", "California, US", "Quebec, CA", "Bavaria, DE", "Texas, US", "Oslo, NO")
OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


PORT_KEY = re.compile(r"^-p\s+(\d+):(\d+)(?:/(tcp|udp))?$")


def workload_of(body: dict[str, Any], env: dict[str, Any]) -> SimWorkload:
    """The container a create call asks for: `args` replaces the image's CMD for runtype
    `args`; the SSH/Jupyter runtypes run Vast's own entrypoint and then `onstart` in a shell
    (modelled as the onstart script as the container's command)."""
    ports = [SimPort(int(m[2]), m[3] or "tcp") for key in env if (m := PORT_KEY.match(key.strip()))]
    runtype = str(body.get("runtype") or "ssh")
    command: list[str] | None = None
    if runtype == "args":
        if isinstance(body.get("args"), list):
            command = [str(a) for a in body["args"]]
        elif body.get("args_str"):
            command = shlex.split(str(body["args_str"]))
    elif body.get("onstart"):
        command = ["sh", "-c", str(body["onstart"])]
    return SimWorkload(
        image=str(body["image"]),
        command=command,
        env={k: str(v) for k, v in env.items() if not k.startswith("-")},
        ports=ports,
    )


class VastSimulator(Simulator):
    name = "vast_ai"
    api_key = "vast-sim-key"
    container_cloud = True

    def register_routes(self) -> None:
        self.route("POST", r"/api/v0/bundles/?", "offers", self.search)
        self.route("PUT", r"/api/v0/asks/(?P<ask>[^/]+)/", "create", self.create)
        self.route("GET", r"/api/v0/instances/(?P<id>\d+)/", "get", self.get)
        self.route("GET", r"/api/v1/instances/", "list", self.list)
        self.route("DELETE", r"/api/v0/instances/(?P<id>\d+)/", "terminate", self.destroy)
        self.route("PUT", r"/api/v0/instances/(?P<id>\d+)/", "update", self.update)
        self.route("PUT", r"/api/v0/instances/request_logs/(?P<id>\d+)/", "logs", self.request_logs)

    def build_market(self, *, offers: int, seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - a simulated market
        models = [row for row in GPU_TABLE if row.vast]
        self.rng = rng
        self.offers: dict[int, dict[str, Any]] = {}
        self.consumed: dict[int, dict[str, Any]] = {}
        self.next_id = 24_817_000
        for n in range(offers):
            row = models[n % len(models)]
            count = rng.choice((1, 1, 1, 2, 4, 8))
            offer_id = 18_000_000 + n
            per_gpu = BASE_PRICE.get(row.canonical, 1.0) * rng.uniform(0.8, 1.35)
            ram = row.vram_gb * 1024 - rng.choice((0, 12))
            self.offers[offer_id] = {
                "id": offer_id,
                "ask_contract_id": offer_id,
                "machine_id": 30_000 + n,
                "host_id": 120_000 + n // 3,
                "num_gpus": count,
                "gpu_name": row.vast[0],
                "gpu_ram": ram,
                "gpu_total_ram": ram * count,
                "gpu_arch": "nvidia",
                "cpu_name": "AMD EPYC 7B13",
                "cpu_cores": 16 * count,
                "cpu_cores_effective": 8.0 * count,
                "cpu_ram": 64_000 * count,
                "disk_space": 400.0,
                "dph_base": round(per_gpu * count, 4),
                "dph_total": round(per_gpu * count * 1.02, 4),
                "min_bid": round(per_gpu * count * 0.6, 4),
                "reliability": round(rng.uniform(0.9, 0.999), 4),
                "reliability2": round(rng.uniform(0.9, 0.999), 4),
                "verified": True,
                "verification": "verified",
                "rentable": True,
                "rented": False,
                "external": False,
                "is_bid": False,
                "hosting_type": rng.choice((0, 1)),
                "geolocation": rng.choice(LOCATIONS),
                "public_ipaddr": f"198.51.100.{n % 250 + 1}",
                "direct_port_count": 100,
                "score": round(rng.uniform(50, 300), 1),
            }

    def drift(self) -> None:
        for offer in self.offers.values():
            factor = self.rng.uniform(0.98, 1.02)
            offer["dph_total"] = round(offer["dph_total"] * factor, 4)
            offer["dph_base"] = round(offer["dph_base"] * factor, 4)

    def exhaust(self, gpu_model: str | None) -> None:
        names = set(BY_CANONICAL[gpu_model].vast) if gpu_model else None
        for offer_id in [
            oid for oid, o in self.offers.items() if names is None or o["gpu_name"] in names
        ]:
            self.consumed[offer_id] = self.offers.pop(offer_id)

    # --- errors in Vast's shapes ---

    def auth_error(self) -> SimResponse:
        return SimResponse.json(
            {"success": False, "error": "auth_error", "msg": "Invalid user key"}, 401
        )

    def error_status(self, status: int) -> SimResponse:
        return SimResponse.text(f"<html><body><h1>{status} Bad Gateway</h1></body></html>", status)

    def rate_limited(self) -> SimResponse:
        return SimResponse.text("API requests too frequent endpoint threshold=4.5", 429)

    def capacity_error(self, op: str) -> SimResponse:
        return self._no_such_ask("0")

    def not_found(self) -> SimResponse:
        return SimResponse.json({"success": False, "error": "not_found", "msg": "Not found"}, 404)

    def account_error(self) -> SimResponse:
        return SimResponse.json(
            {"success": False, "error": "insufficient_credit", "msg": "Your balance is too low."},
            400,
        )

    def invalid_request(self) -> SimResponse:
        return SimResponse.json(
            {"success": False, "error": "invalid_args", "msg": "error 400/3467: Invalid args"},
            400,
        )

    def _no_such_ask(self, ask: str) -> SimResponse:
        return SimResponse.json(
            {
                "success": False,
                "error": "no_such_ask",
                "msg": f"error 404/3603: no_such_ask Instance type by id {ask} is not available.",
            },
            404,
        )

    # --- endpoints ---

    def search(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        query = request.json() or {}
        if not isinstance(query, dict):
            return SimResponse.json(
                {"success": False, "error": "invalid_args", "msg": "bad query"}, 400
            )
        limit = int(query.get("limit") or 64)
        order = query.get("order") or [["score", "desc"]]
        found = []
        for offer in self.offers.values():
            ok = True
            for key, condition in query.items():
                if key in ("order", "limit", "type", "allocated_storage") or not isinstance(
                    condition, dict
                ):
                    continue
                value = offer.get(key)
                for op_name, operand in condition.items():
                    test = OPS.get(op_name)
                    if test is not None and not test(value, operand):
                        ok = False
            if ok:
                found.append(offer)
        for col, direction in reversed(order):

            def by_col(offer: dict[str, Any], col: str = col) -> Any:
                return offer.get(col) or 0

            found.sort(key=by_col, reverse=direction == "desc")
        found = found[:limit]
        if self.stale_offers:
            # A cached view: offers already rented are still listed (cheapest first).
            self.stale_offers -= 1
            ghosts = list(self.consumed.values())[:3] or [
                {**next(iter(self.offers.values())), "id": 999_999_999}
            ]
            found = [{**g, "dph_total": 0.001} for g in ghosts] + found
        return SimResponse.json({"offers": found})

    def create(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        ask = match["ask"]
        body = request.json() or {}
        if not body.get("image"):
            return SimResponse.json(
                {
                    "success": False,
                    "error": "invalid_args",
                    "msg": "error 400/3467: Invalid args: image required",
                },
                400,
            )
        if len(body.get("onstart") or "") > 4096:
            return SimResponse.json(
                {
                    "success": False,
                    "error": "invalid_args",
                    "msg": "error 400/3467: onstart too long",
                },
                400,
            )
        offer = self.offers.pop(int(ask), None) if ask.isdigit() else None
        if offer is None:
            return self._no_such_ask(ask)
        self.consumed[offer["id"]] = offer
        env = body.get("env") or {}
        if isinstance(env, str):  # the OpenAPI's docker-flag form: "-e K=V -p 8000:8000"
            flags = env
            env = dict(re.findall(r"-e\s+(\w+)=(\S+)", flags))
            env.update({f"-p {a}:{b}": "1" for a, b in re.findall(r"-p\s+(\d+):(\d+)", flags)})
        bid = body.get("price")
        self.next_id += 1
        instance = self.new_instance(
            id=str(self.next_id),
            label=str(body.get("label") or ""),
            gpu_model=self._canonical(offer),
            gpu_count=offer["num_gpus"],
            # a bid rental pays its bid
            price_per_hour=float(bid) if bid else offer["dph_total"],
            env={k: str(v) for k, v in env.items() if not k.startswith("-")},
            region=offer["geolocation"],
            extra={
                "offer": offer,
                "image": body["image"],
                "runtype": body.get("runtype", "ssh"),
                "onstart": str(body.get("onstart") or ""),
                "is_bid": bool(bid),
                "port_keys": [k for k in env if k.startswith("-p")],
            },
        )
        instance.workload = workload_of(body, env)
        return SimResponse.json({"success": True, "new_contract": int(instance.id)})

    def _canonical(self, offer: dict[str, Any]) -> str:
        return from_vast(offer["gpu_name"], offer["gpu_ram"]) or offer["gpu_name"]

    def _container_status(self, instance: SimInstance) -> tuple[str | None, str, str, bool]:
        """(actual_status, intended_status, status_msg, ports published) as the container
        really is."""
        phase = instance.phase(time.monotonic())
        if phase == "creating":
            return None, "running", "Creating contract", False
        if instance.workload is None:  # planted by a test, no container
            return ("running" if phase == "running" else "loading"), "running", "success", True
        if instance.preempted == "host_lost":
            return "offline", "running", "host went offline", False
        if instance.preempted:
            return "stopped", "running", "stopped: outbid by a higher bid", False
        state = self.container_state(instance)
        if state.status == "pending":
            return "loading", "running", "Pulling image", False
        if state.status == "failed":
            return "created", "running", state.message, False
        if state.status == "running":
            return "running", "running", f"success, running {instance.workload.image}", True
        if state.status == "gone":
            return "exited", "running", "container removed", False
        return "exited", "running", f"container exited with code {state.exit_code}", False

    def _ports(self, instance: SimInstance) -> dict[str, Any]:
        """Host networking: each container port answers on the same port of 127.0.0.1."""
        if instance.workload is None:
            return {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41022"}]}  # noqa: S104
        return {
            f"{p.container_port}/{p.protocol}": [
                {"HostIp": "0.0.0.0", "HostPort": str(p.container_port)}  # noqa: S104
            ]
            for p in instance.workload.ports
        }

    def _view(self, instance: SimInstance) -> dict[str, Any]:
        offer = instance.extra.get("offer") or {}
        actual, intended, status_msg, running = self._container_status(instance)
        containers = instance.workload is not None
        return {
            "id": int(instance.id),
            "label": instance.label or None,
            "machine_id": offer.get("machine_id"),
            "host_id": offer.get("host_id"),
            "actual_status": actual,
            "intended_status": intended,
            "cur_state": "running",
            "next_state": "running",
            "status_msg": status_msg,
            "num_gpus": instance.gpu_count,
            "gpu_name": offer.get("gpu_name", instance.gpu_model),
            "gpu_ram": offer.get("gpu_ram"),
            "dph_total": instance.price_per_hour,
            "is_bid": bool(instance.extra.get("is_bid")),
            "image_uuid": instance.extra.get("image"),
            "image_runtype": "args"
            if instance.extra.get("runtype") == "args"
            else "ssh ssh_direc ssh_proxy",
            "image_args": instance.workload.command if containers and instance.workload else None,
            "onstart": instance.extra.get("onstart", ""),
            "extra_env": [[k, v] for k, v in instance.env.items()],
            "ssh_host": "ssh4.vast.ai" if running and not containers else None,
            "ssh_port": 27000 + int(instance.id) % 1000 if running and not containers else None,
            # the container's host is this machine: its ports answer on loopback
            "public_ipaddr": ("127.0.0.1" if containers else offer.get("public_ipaddr", "")) + "\n",
            "local_ipaddrs": "10.0.4.17 172.17.0.1\n",
            "ports": self._ports(instance) if running else None,
            "geolocation": instance.region,
            "start_date": time.time(),
        }

    def get(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return SimResponse.json({"instances": None})
        return SimResponse.json({"instances": self._view(instance)})

    def list(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        limit = int(request.query.get("limit") or 25)
        limit = 5 if limit <= 0 else min(limit, PAGE)
        after = 0
        if request.query.get("after_token"):
            try:
                after = int(base64.urlsafe_b64decode(request.query["after_token"]).decode())
            except (ValueError, UnicodeDecodeError):
                return SimResponse.json(
                    {"success": False, "error": "invalid_token", "msg": "invalid after_token"}, 400
                )
        live = sorted(
            (i for i in self.instances.values() if not i.terminated and int(i.id) > after),
            key=lambda i: int(i.id),
        )
        page = live[:limit]
        more = len(live) > limit
        labels: dict[str, int] = {}
        for i in self.instances.values():
            if not i.terminated and i.label:
                labels[i.label] = labels.get(i.label, 0) + 1
        return SimResponse.json(
            {
                "success": True,
                "instances": [self._view(i) for i in page],
                "instances_found": len(page),
                "total_instances": sum(1 for i in self.instances.values() if not i.terminated),
                "label_counts": labels,
                "next_token": base64.urlsafe_b64encode(page[-1].id.encode()).decode()
                if more
                else None,
            }
        )

    def destroy(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return SimResponse.json(
                {"success": False, "error": "not_found", "msg": "Instance not found"}, 404
            )
        self.terminate(instance)
        offer = instance.extra.get("offer")
        # the machine is for rent again, unless a higher bid (or its host's loss) took it
        if offer and "id" in offer and not instance.preempted:
            self.consumed.pop(offer["id"], None)
            self.offers[offer["id"]] = offer
        return SimResponse.json({"success": True})

    def request_logs(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        """Vast uploads the log and answers where it will be; here, the control API serves
        the upload at `result_url` (no auth, like a signed storage URL)."""
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return SimResponse.json(
                {"success": False, "error": "no_such_instance", "msg": "no such instance"}, 404
            )
        body = request.json() or {}
        try:
            tail = int(str(body.get("tail") or "1000"))
        except ValueError:
            return self.invalid_request()
        token = uuid.uuid4().hex
        self.log_files[token] = self.containers.logs(instance.id, tail)
        host = request.headers.get("host", "127.0.0.1")
        return SimResponse.json({"success": True, "result_url": f"http://{host}/_sim/logs/{token}"})

    def update(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return SimResponse.json(
                {"success": False, "error": "no_such_instance", "msg": "no such instance"}, 404
            )
        body = request.json() or {}
        if "label" in body:
            if len(str(body["label"])) > 256:
                return SimResponse.json(
                    {"success": False, "error": "label_too_long", "msg": "label too long"}, 400
                )
            instance.label = str(body["label"])
        return SimResponse.json({"success": True})

    def startup_env(self, instance: SimInstance) -> dict[str, str]:
        return {
            **instance.env,
            "CONTAINER_ID": instance.id,
            "VAST_CONTAINERLABEL": f"C.{instance.id}",
        }

    def plant(self, *, label: str, gpu_model: str) -> SimInstance:
        self.next_id += 1
        return self.new_instance(
            id=str(self.next_id),
            label=label,
            gpu_model=gpu_model,
            gpu_count=1,
            price_per_hour=BASE_PRICE.get(gpu_model, 1.0),
            extra={
                "offer": {
                    "gpu_name": BY_CANONICAL[gpu_model].vast[0],
                    "gpu_ram": BY_CANONICAL[gpu_model].vram_gb * 1024,
                }
            },
        )
