"""A Lambda Cloud look-alike (fact sheet §3, quirks of §6): `{"data": …}` envelopes and
`{"error": {code, message, suggestion}}` failures, capacity per (type, region) through
`regions_with_capacity_available`, launch needing exactly one existing SSH key name and
rate-limited far harder than reads, `booting → active` with `ip` filled in at `active`,
terminate answering the instances under `terminated_instances`."""

from __future__ import annotations

import random
import re
import sysconfig
import time
import uuid
from typing import Any

from apps.sourcing.adapters.gpu_names import (
    BY_CANONICAL,
    GPU_TABLE,
    from_lambda,
    lambda_description,
)
from apps.sourcing.simulators.base import Simulator
from apps.sourcing.simulators.machines import SimInstance
from apps.sourcing.simulators.markets import BASE_PRICE
from apps.sourcing.simulators.wire import SimRequest, SimResponse

REGIONS = {
    "us-west-1": "California, USA",
    "us-east-1": "Virginia, USA",
    "us-south-1": "Texas, USA",
    "europe-central-1": "Germany",
    "asia-northeast-1": "Tokyo, Japan",
}
COUNTS = (1, 2, 4, 8)


def _type_name(canonical: str, count: int) -> str:
    model = BY_CANONICAL[canonical].lambda_gpu[0].lower().replace(" ", "_")
    return f"gpu_{count}x_{model}"


class LambdaSimulator(Simulator):
    name = "lambda_labs"
    api_key = "lambda-sim-key"

    def __init__(self, **kwargs: Any) -> None:
        self.ssh_keys = {"gco"}
        self.launch_interval = 0.0  # seconds between launches (0: no launch rate limit)
        self._last_launch = 0.0
        super().__init__(**kwargs)

    def configure(self, body: dict[str, Any]) -> None:
        if "launch_interval" in body:
            self.launch_interval = float(body["launch_interval"])
        if "ssh_keys" in body:
            self.ssh_keys = set(body["ssh_keys"])

    def register_routes(self) -> None:
        self.route("GET", r"/api/v1/instance-types", "offers", self.instance_types)
        self.route("POST", r"/api/v1/instance-operations/launch", "create", self.launch)
        self.route("GET", r"/api/v1/instances", "list", self.list)
        self.route("GET", r"/api/v1/instances/(?P<id>[0-9a-f]+)", "get", self.get)
        self.route("POST", r"/api/v1/instance-operations/terminate", "terminate", self.terminate_op)

    def build_market(self, *, offers: int, seed: int) -> None:
        self._last_launch = 0.0
        self.rng = random.Random(seed)  # noqa: S311 - a simulated market
        self.types: dict[str, dict[str, Any]] = {}
        self.capacity: dict[tuple[str, str], int] = {}
        for row in GPU_TABLE:
            if not row.lambda_gpu:
                continue
            for count in COUNTS:
                name = _type_name(row.canonical, count)
                cents = round(BASE_PRICE.get(row.canonical, 1.0) * 1.1 * count * 100)
                self.types[name] = {
                    "name": name,
                    "description": lambda_description(row.canonical, count),
                    "gpu_description": lambda_description(row.canonical, 1)[3:],
                    "price_cents_per_hour": cents,
                    "specs": {
                        "vcpus": 26 * count,
                        "memory_gib": 200 * count,
                        "storage_gib": 1024 * count,
                        "gpus": count,
                    },
                }
                for region in REGIONS:
                    self.capacity[(name, region)] = 0
        keys = list(self.capacity)
        for _ in range(offers):
            self.capacity[keys[self.rng.randrange(len(keys))]] += 1

    def drift(self) -> None:
        pass  # Lambda's list prices are fixed; capacity is what moves

    def exhaust(self, gpu_model: str | None) -> None:
        for name, region in self.capacity:
            if gpu_model is None or name.startswith("gpu_") and self._canonical(name) == gpu_model:
                self.capacity[(name, region)] = 0

    def _canonical(self, type_name: str) -> str:
        parsed = from_lambda(self.types[type_name]["description"])
        return parsed[0] if parsed else type_name

    # --- errors ---

    def _error(
        self, status: int, code: str, message: str, suggestion: str | None = None
    ) -> SimResponse:
        return SimResponse.json(
            {"error": {"code": code, "message": message, "suggestion": suggestion}}, status
        )

    def auth_error(self) -> SimResponse:
        return self._error(
            401, "global/invalid-api-key", "API key was invalid, expired, or deleted."
        )

    def error_status(self, status: int) -> SimResponse:
        return self._error(
            status, "provider/internal-unavailable", "Provider is temporarily unavailable."
        )

    def rate_limited(self) -> SimResponse:
        return SimResponse.json(
            {"error": {"code": "global/too-many-requests", "message": "Too many requests"}}, 429
        )

    def capacity_error(self, op: str) -> SimResponse:
        return self._error(
            400,
            "instance-operations/launch/insufficient-capacity",
            "Not enough capacity to fulfill launch request.",
        )

    def account_error(self) -> SimResponse:
        return self._error(400, "global/quota-exceeded", "Instance quota exceeded.")

    def invalid_request(self) -> SimResponse:
        return self._error(400, "global/invalid-parameters", "Invalid request body.")

    def not_found(self) -> SimResponse:
        return self._error(
            404, "global/object-does-not-exist", "Specified instance does not exist."
        )

    # --- endpoints ---

    def instance_types(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        data = {}
        for name, itype in self.types.items():
            regions = [
                {"name": r, "description": REGIONS[r]}
                for r in REGIONS
                if self.capacity[(name, r)] > 0
            ]
            if self.stale_offers and not regions:
                regions = [{"name": "us-west-1", "description": REGIONS["us-west-1"]}]
            data[name] = {"instance_type": itype, "regions_with_capacity_available": regions}
        if self.stale_offers:
            self.stale_offers -= 1
        return SimResponse.json({"data": data})

    def launch(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        now = time.monotonic()
        if self.launch_interval and now - self._last_launch < self.launch_interval:
            return self.rate_limited()
        self._last_launch = now
        body = request.json() or {}
        if not isinstance(body, dict):
            return self._error(400, "global/invalid-parameters", "Body must be an object.")
        region, type_name = body.get("region_name"), body.get("instance_type_name")
        if region not in REGIONS or type_name not in self.types:
            return self._error(
                400, "global/invalid-parameters", "Invalid region_name or instance_type_name."
            )
        keys = body.get("ssh_key_names")
        if not isinstance(keys, list) or len(keys) != 1:
            return self._error(
                400, "global/invalid-parameters", "Exactly one SSH key name is required."
            )
        if keys[0] not in self.ssh_keys:
            return self._error(
                404, "global/object-does-not-exist", f"SSH key {keys[0]!r} does not exist."
            )
        name = body.get("name")
        if name is not None and len(str(name)) > 64:
            return self._error(
                400, "global/invalid-parameters", "name must be at most 64 characters."
            )
        if self.capacity[(type_name, region)] <= 0:
            return self.capacity_error("create")
        self.capacity[(type_name, region)] -= 1
        itype = self.types[type_name]
        instance = self.new_instance(
            id=uuid.uuid4().hex,
            label=str(name or ""),
            gpu_model=self._canonical(type_name),
            gpu_count=itype["specs"]["gpus"],
            price_per_hour=itype["price_cents_per_hour"] / 100,
            startup_script=str(body.get("user_data") or ""),
            region=region,
            extra={"type": type_name, "ssh_key_names": keys},
        )
        return SimResponse.json({"data": {"instance_ids": [instance.id]}})

    def _view(self, instance: SimInstance, status: str | None = None) -> dict[str, Any]:
        phase = instance.phase(time.monotonic())
        status = status or {"creating": "booting", "booting": "booting", "running": "active"}.get(
            phase, "terminated"
        )
        active = status == "active"
        return {
            "id": instance.id,
            "name": instance.label or None,
            "ip": f"129.146.88.{int(instance.id[:2], 16) % 250 + 1}" if active else None,
            "private_ip": "10.19.60.24",
            "status": status,
            "ssh_key_names": instance.extra.get("ssh_key_names", ["gco"]),
            "file_system_names": [],
            "region": {"name": instance.region, "description": REGIONS.get(instance.region, "")},
            "instance_type": self.types[instance.extra["type"]],
            "hostname": "10-19-60-24.cloud.lambdalabs.com",
            "is_reserved": False,
        }

    def list(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        return SimResponse.json(
            {"data": [self._view(i) for i in self.instances.values() if not i.terminated]}
        )

    def get(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return self.not_found()
        return SimResponse.json({"data": self._view(instance)})

    def terminate_op(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        body = request.json() or {}
        ids = body.get("instance_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            return self._error(400, "global/invalid-parameters", "instance_ids is required.")
        found = [self.instances.get(str(i)) for i in ids]
        if any(i is None or i.terminated for i in found):
            return self.not_found()
        out = []
        for instance in found:
            assert instance is not None  # noqa: S101 - checked above
            self.terminate(instance)
            self.capacity[(instance.extra["type"], instance.region)] += 1
            out.append(self._view(instance, status="terminating"))
        return SimResponse.json({"data": {"terminated_instances": out}})

    def startup_env(self, instance: SimInstance) -> dict[str, str]:
        """What a Lambda Stack VM is, as far as our installer can tell, on a machine that is
        not one: root's system paths live in the instance's sandbox (install.sh honours
        GCO_INSTALL_ROOT, which also makes it start the agent with nohup); there is no
        internet, so pip resolves the agent's dependencies from this Python's site-packages
        instead of PyPI; there is no bridge network and no GPU device to hand to containers
        (the agent's GPU_AGENT_* settings)."""
        root = instance.sandbox
        return {
            "GCO_INSTALL_ROOT": str(root),
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONPATH": sysconfig.get_paths()["purelib"],
            "GPU_AGENT_NETWORK_MODE": "host",
            "GPU_AGENT_GPU_DEVICES": "off",
            **instance.env,
        }

    def startup_command(self, instance: SimInstance) -> str:
        # cloud-init runs user_data as a script file on first boot.
        return instance.startup_script

    def plant(self, *, label: str, gpu_model: str) -> SimInstance:
        type_name = _type_name(gpu_model, 1)
        return self.new_instance(
            id=uuid.uuid4().hex,
            label=label,
            gpu_model=gpu_model,
            gpu_count=1,
            price_per_hour=self.types[type_name]["price_cents_per_hour"] / 100,
            region="us-west-1",
            extra={"type": type_name},
        )
