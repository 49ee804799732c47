# Over 450 lines: one upstream API over one pod table; splitting would scatter its quirks.
"""A RunPod look-alike (fact sheet §2, quirks of §6): a real GraphQL endpoint (documents with
inline literals or variables) that answers resolver errors inside HTTP 200 with
`data.<field>: null`, 400 for invalid documents and 401 for a bad key; REST v2 pods with
problem+json errors, RateLimit headers, 204 on delete. `desiredStatus` is RUNNING at once
while `runtime` stays null until the machine is up."""

from __future__ import annotations

import random
import re
import shlex
import string
import time
from typing import Any

from graphql import GraphQLError, parse
from graphql.language import FieldNode, OperationDefinitionNode, SelectionSetNode
from graphql.utilities import value_from_ast_untyped

from apps.sourcing.adapters.gpu_names import BY_CANONICAL, GPU_TABLE, from_runpod
from apps.sourcing.simulators.base import Simulator
from apps.sourcing.simulators.containers import SimPort, SimWorkload
from apps.sourcing.simulators.machines import SimInstance
from apps.sourcing.simulators.markets import BASE_PRICE
from apps.sourcing.simulators.wire import SimRequest, SimResponse

CAPACITY = (
    "There are no longer any instances available with the requested specifications. "
    "Please refresh and try again."
)
INTERNAL = "Something went wrong. Please try again later or contact support."
CREATE_FIELDS = {
    "name",
    "imageName",
    "gpuTypeId",
    "gpuCount",
    "cloudType",
    "dataCenterId",
    "countryCode",
    "containerDiskInGb",
    "volumeInGb",
    "volumeMountPath",
    "minVcpuCount",
    "minMemoryInGb",
    "dockerArgs",
    "ports",
    "env",
    "startSsh",
    "supportPublicIp",
    "templateId",
    "networkVolumeId",
    "allowedCudaVersions",
    "minCudaVersion",
    "minDownload",
    "minUpload",
    "containerRegistryAuthId",
}
SPOT_FIELDS = CREATE_FIELDS | {"bidPerGpu", "stopAfter", "terminateAfter"}
QUERY_FIELDS = {"gpuTypes", "pod", "myself", "dataCenters", "countryCodes"}
MUTATION_FIELDS = {"podFindAndDeployOnDemand", "podRentInterruptable", "podTerminate", "podStop"}
RATE_HEADERS = {
    "RateLimit": '"minute";r=59;t=60, "hour";r=2999;t=3600',
    "RateLimit-Policy": '"minute";q=60;w=60, "hour";q=3000;w=3600',
}


def project(value: Any, selection: SelectionSetNode | None) -> Any:
    """Keep only the selected fields (recursively), as a GraphQL server answers."""
    if selection is None or value is None:
        return value
    if isinstance(value, list):
        return [project(item, selection) for item in value]
    out = {}
    for node in selection.selections:
        if isinstance(node, FieldNode):
            key = node.alias.value if node.alias else node.name.value
            out[key] = project(value.get(node.name.value), node.selection_set)
    return out


def workload_of(pod_input: dict[str, Any], env: dict[str, str]) -> SimWorkload:
    """A pod is a container of `imageName`; `dockerArgs` replaces its command; `ports` is the
    comma string ("8888/http,22/tcp")."""
    ports = []
    for item in str(pod_input.get("ports") or "").split(","):
        number, _, kind = item.strip().partition("/")
        if number.isdigit():
            ports.append(SimPort(int(number), kind or "tcp"))
    args = str(pod_input.get("dockerArgs") or "")
    return SimWorkload(
        image=str(pod_input.get("imageName") or ""),
        command=shlex.split(args) if args else None,
        env=env,
        ports=ports,
    )


class RunPodSimulator(Simulator):
    name = "runpod"
    api_key = "runpod-sim-key"
    container_cloud = True

    def register_routes(self) -> None:
        self.route("POST", r"/graphql", "graphql", self.graphql)
        self.route("GET", r"/v2/pods", "list", self.v2_list)
        self.route("GET", r"/v2/pods/(?P<id>[^/]+)", "get", self.v2_get)
        self.route("DELETE", r"/v2/pods/(?P<id>[^/]+)", "terminate", self.v2_delete)

    def build_market(self, *, offers: int, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a simulated market
        rows = [row for row in GPU_TABLE if row.runpod]
        self.types: dict[str, dict[str, Any]] = {}
        # machines free per (gpu type, cloud): `offers` machines spread over the types
        self.stock: dict[tuple[str, str], int] = {}
        for row in rows:
            base = BASE_PRICE.get(row.canonical, 1.0)
            gpu_id = row.runpod[0]
            self.types[gpu_id] = {
                "id": gpu_id,
                "displayName": row.canonical,
                "manufacturer": "Nvidia",
                "memoryInGb": row.vram_gb,
                "maxGpuCount": 8,
                "secureCloud": True,
                "communityCloud": row.vram_gb <= 48,
                "securePrice": round(base * 1.3, 2),
                "communityPrice": round(base * 1.05, 2),
                "secureSpotPrice": round(base * 0.7, 2),
                "communitySpotPrice": round(base * 0.55, 2),
            }
            self.stock[(gpu_id, "SECURE")] = 0
            self.stock[(gpu_id, "COMMUNITY")] = 0
        keys = list(self.stock)
        for n in range(offers):
            self.stock[keys[n % len(keys)]] += 1
        self.pod_seq = 0

    def drift(self) -> None:
        for gpu in self.types.values():
            factor = self.rng.uniform(0.98, 1.02)
            for key in ("securePrice", "communityPrice", "secureSpotPrice", "communitySpotPrice"):
                gpu[key] = round(gpu[key] * factor, 3)

    def exhaust(self, gpu_model: str | None) -> None:
        ids = set(BY_CANONICAL[gpu_model].runpod) if gpu_model else None
        for key in self.stock:
            if ids is None or key[0] in ids:
                self.stock[key] = 0

    # --- errors ---

    def auth_error(self) -> SimResponse:
        return SimResponse.text("Unauthorized", 401)

    def error_status(self, status: int) -> SimResponse:
        return SimResponse.json(
            {"title": "Service Unavailable", "status": status, "detail": "upstream error"},
            status,
            **{"Content-Type": "application/problem+json"},
        )

    def rate_limited(self) -> SimResponse:
        return SimResponse.json(
            {
                "title": "Too Many Requests",
                "status": 429,
                "detail": "rate limit exceeded for the minute window",
            },
            429,
            **{"Content-Type": "application/problem+json", "Retry-After": "1", **RATE_HEADERS},
        )

    def capacity_error(self, op: str) -> SimResponse:
        return SimResponse.json(
            {
                "errors": [
                    {
                        "message": CAPACITY,
                        "path": ["podFindAndDeployOnDemand"],
                        "extensions": {"code": "SUPPLY_CONSTRAINT"},
                    }
                ],
                "data": {"podFindAndDeployOnDemand": None},
            }
        )

    def graphql_error(self) -> SimResponse:
        return SimResponse.json(
            {
                "errors": [
                    {
                        "message": INTERNAL,
                        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
                    }
                ],
                "data": None,
            }
        )

    def account_error(self) -> SimResponse:
        return SimResponse.json(
            {"title": "Forbidden", "status": 403, "detail": "access denied"},
            403,
            **{"Content-Type": "application/problem+json"},
        )

    def invalid_request(self) -> SimResponse:
        return SimResponse.json(
            {"errors": [{"message": 'Field "bogus" is not defined by type input.'}]}, 400
        )

    def not_found(self) -> SimResponse:
        return SimResponse.json(
            {"title": "Not Found", "status": 404, "detail": "pod not found"},
            404,
            **{"Content-Type": "application/problem+json"},
        )

    # --- GraphQL ---

    GRAPHQL_OPS = {
        "gpuTypes": "offers",
        "podFindAndDeployOnDemand": "create",
        "podRentInterruptable": "create",
        "podTerminate": "terminate",
        "pod": "get",
        "myself": "list",
    }

    def op_name(self, op: str, request: SimRequest) -> str:
        if op != "graphql":
            return op
        try:
            document = parse((request.json() or {})["query"])
        except (GraphQLError, KeyError, ValueError, TypeError):
            return op
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                for node in definition.selection_set.selections:
                    if isinstance(node, FieldNode):
                        return self.GRAPHQL_OPS.get(node.name.value, op)
        return op

    def graphql(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        try:
            payload = request.json() or {}
            document = parse(payload["query"])
        except (GraphQLError, KeyError, ValueError, TypeError) as exc:
            return SimResponse.json({"errors": [{"message": f"Syntax Error: {exc}"}]}, 400)
        variables = payload.get("variables") or {}
        self._variables = variables
        operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
        kind = operation.operation.value
        allowed = MUTATION_FIELDS if kind == "mutation" else QUERY_FIELDS
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for node in operation.selection_set.selections:
            if not isinstance(node, FieldNode):
                continue
            name = node.name.value
            if name not in allowed:
                return SimResponse.json(
                    {
                        "errors": [
                            {"message": f'Cannot query field "{name}" on type "{kind.title()}".'}
                        ]
                    },
                    400,
                )
            args = {
                a.name.value: value_from_ast_untyped(a.value, variables) for a in node.arguments
            }
            key = node.alias.value if node.alias else name
            try:
                value = getattr(self, f"_gql_{name}")(args, node)
            except _ResolverError as exc:
                errors.append(
                    {"message": exc.message, "path": [key], "extensions": {"code": exc.code}}
                )
                data[key] = None
            except _ValidationError as exc:
                return SimResponse.json({"errors": [{"message": exc.message}]}, 400)
            else:
                data[key] = project(value, node.selection_set)
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        return SimResponse.json(body)

    def _gql_gpuTypes(self, args: dict[str, Any], node: FieldNode) -> list[dict[str, Any]]:  # noqa: N802
        wanted = (args.get("input") or {}).get("id")
        out = []
        lowest_node = next(
            (
                s
                for s in (node.selection_set.selections if node.selection_set else [])
                if isinstance(s, FieldNode) and s.name.value == "lowestPrice"
            ),
            None,
        )
        lp_input: dict[str, Any] = {}
        if lowest_node is not None:
            for a in lowest_node.arguments:
                lp_input = value_from_ast_untyped(a.value, self._variables) or {}
        count = int(lp_input.get("gpuCount") or 1)
        for gpu in self.types.values():
            if wanted and gpu["id"] != wanted:
                continue
            free = self.stock[(gpu["id"], "SECURE")] + self.stock[(gpu["id"], "COMMUNITY")]
            stock = (
                None
                if free < count
                else ("High" if free >= 8 else "Medium" if free >= 3 else "Low")
            )
            out.append(
                {
                    **gpu,
                    "lowestPrice": {
                        "minimumBidPrice": gpu["communitySpotPrice"],
                        "uninterruptablePrice": gpu["communityPrice"],
                        "minVcpu": 6,
                        "minMemory": 41,
                        "stockStatus": stock,
                        "countryCode": "US",
                    },
                }
            )
        return out

    def _gql_dataCenters(self, args: dict[str, Any], node: FieldNode) -> list[dict[str, Any]]:  # noqa: N802
        return [{"id": "US-TX-3", "name": "US-TX-3", "listed": True}]

    def _gql_countryCodes(self, args: dict[str, Any], node: FieldNode) -> list[str]:  # noqa: N802
        return ["US", "CA", "RO", "SE"]

    def _create(self, args: dict[str, Any], allowed: set[str], spot: bool) -> dict[str, Any]:
        pod_input = args.get("input") or {}
        unknown = set(pod_input) - allowed
        if unknown:
            raise _ValidationError(f'Field "{sorted(unknown)[0]}" is not defined by type input.')
        gpu_id = pod_input.get("gpuTypeId")
        if gpu_id not in self.types:
            raise _ResolverError(CAPACITY, "SUPPLY_CONSTRAINT")
        if spot and not pod_input.get("bidPerGpu"):
            raise _ValidationError('Field "bidPerGpu" of required type "Float!" was not provided.')
        count = int(pod_input.get("gpuCount") or 1)
        cloud = str(pod_input.get("cloudType") or "ALL")
        clouds = ("SECURE", "COMMUNITY") if cloud == "ALL" else (cloud,)
        chosen = next((c for c in clouds if self.stock.get((gpu_id, c), 0) >= count), None)
        if chosen is None:
            raise _ResolverError(CAPACITY, "SUPPLY_CONSTRAINT")
        self.stock[(gpu_id, chosen)] -= count
        gpu = self.types[gpu_id]
        price_key = ("secure" if chosen == "SECURE" else "community") + (
            "SpotPrice" if spot else "Price"
        )
        price = float(pod_input["bidPerGpu"]) if spot else gpu[price_key]
        self.pod_seq += 1
        pod_id = "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=14))
        env = {e["key"]: str(e["value"]) for e in pod_input.get("env") or [] if isinstance(e, dict)}
        if not pod_input.get("imageName"):
            raise _ValidationError('Field "imageName" of required type "String!" was not provided.')
        instance = self.new_instance(
            id=pod_id,
            label=str(pod_input.get("name") or ""),
            gpu_model=from_runpod(gpu_id) or gpu_id,
            gpu_count=count,
            price_per_hour=round(price * count, 4),
            env=env,
            region="US-TX-3",
            extra={
                "gpu_type_id": gpu_id,
                "cloud": chosen,
                "image": pod_input.get("imageName"),
                "docker_args": str(pod_input.get("dockerArgs") or ""),
                "ports": str(pod_input.get("ports") or ""),
                "disk": int(pod_input.get("containerDiskInGb") or 0),
                "interruptible": spot,
            },
        )
        instance.workload = workload_of(pod_input, env)
        return self._gql_pod_view(instance)

    def _gql_podFindAndDeployOnDemand(  # noqa: N802 - GraphQL field names
        self, args: dict[str, Any], node: FieldNode
    ) -> dict[str, Any]:
        return self._create(args, CREATE_FIELDS, spot=False)

    def _gql_podRentInterruptable(self, args: dict[str, Any], node: FieldNode) -> dict[str, Any]:  # noqa: N802
        return self._create(args, SPOT_FIELDS, spot=True)

    def _gql_podTerminate(self, args: dict[str, Any], node: FieldNode) -> None:  # noqa: N802
        pod_id = (args.get("input") or {}).get("podId")
        instance = self.instances.get(str(pod_id))
        if instance is None or instance.terminated:
            raise _ResolverError("pod not found to terminate", "NOT_FOUND")
        self._release(instance)
        return None

    def _gql_podStop(self, args: dict[str, Any], node: FieldNode) -> dict[str, Any]:  # noqa: N802
        raise _ResolverError(
            "Something went wrong. Please try again later or contact support.",
            "INTERNAL_SERVER_ERROR",
        )

    def _gql_pod(self, args: dict[str, Any], node: FieldNode) -> dict[str, Any] | None:
        pod_id = (args.get("input") or {}).get("podId")
        instance = self.instances.get(str(pod_id))
        if instance is None or instance.terminated:
            return None
        return self._gql_pod_view(instance)

    def _gql_myself(self, args: dict[str, Any], node: FieldNode) -> dict[str, Any]:
        return {
            "pods": [self._gql_pod_view(i) for i in self.instances.values() if not i.terminated]
        }

    def _status(self, instance: SimInstance) -> str:
        """The v2 status as the container really is. A container that never comes up (no
        such image) sits at RUNNING with `runtime: null`, as RunPod's pods do (§2.4)."""
        phase = instance.phase(time.monotonic())
        if phase == "terminated":
            return "TERMINATED"
        if phase == "creating":
            return "PROVISIONING"
        if instance.workload is None:
            return "RUNNING" if phase == "running" else "STARTING"
        state = self.container_state(instance)
        if state.status in ("exited", "gone"):
            return "EXITED"
        return "RUNNING" if phase == "running" else "STARTING"

    def _runtime_ports(self, instance: SimInstance) -> list[dict[str, Any]] | None:
        """Null until the container is up; host networking: public port = private port on
        loopback."""
        if instance.workload is None:
            if instance.phase(time.monotonic()) != "running":
                return None
            return [{"private": 22, "public": 35558, "type": "tcp", "ip": "213.173.104.74"}]
        if instance.preempted or self.container_state(instance).status != "running":
            return None
        return [
            {
                "private": p.container_port,
                "public": p.container_port,
                "type": p.protocol,
                "ip": "127.0.0.1",
            }
            for p in instance.workload.ports
        ]

    def _gql_pod_view(self, instance: SimInstance) -> dict[str, Any]:
        ports = self._runtime_ports(instance)
        status = self._status(instance)
        return {
            "id": instance.id,
            "name": instance.label,
            "desiredStatus": "EXITED" if status == "EXITED" else "RUNNING",
            "podType": "INTERRUPTABLE" if instance.extra.get("interruptible") else "RESERVED",
            "costPerHr": instance.price_per_hour,
            "gpuCount": instance.gpu_count,
            "imageName": instance.extra.get("image"),
            "machineId": f"m{instance.id[:10]}",
            "env": [f"{k}={v}" for k, v in instance.env.items()],
            "dockerArgs": instance.extra.get("docker_args", ""),
            "ports": instance.extra.get("ports", ""),
            "runtime": {
                "uptimeInSeconds": 1,
                "ports": [
                    {
                        "ip": p["ip"],
                        "isIpPublic": True,
                        "privatePort": p["private"],
                        "publicPort": p["public"],
                        "type": p["type"],
                    }
                    for p in ports
                ],
            }
            if ports is not None
            else None,
            "machine": {
                "podHostId": f"{instance.id}-64410a1b",
                "gpuDisplayName": instance.gpu_model,
            },
        }

    # --- REST v2 ---

    def _v2_view(self, instance: SimInstance) -> dict[str, Any]:
        status = self._status(instance)
        ports = self._runtime_ports(instance)
        running = status == "RUNNING"
        ssh_direct = running and instance.workload is None
        return {
            "id": instance.id,
            "name": instance.label,
            "status": status,
            "actions": ["stop", "restart", "terminate"] if running else ["start", "terminate"],
            "image": instance.extra.get("image"),
            "args": instance.extra.get("docker_args", ""),
            "disk": instance.extra.get("disk", 50),
            "ports": [p for p in str(instance.extra.get("ports") or "22/tcp").split(",") if p],
            "env": instance.env,
            "gpu": {"id": instance.extra.get("gpu_type_id"), "count": instance.gpu_count},
            "cloud": instance.extra.get("cloud", "SECURE"),
            "dataCenterId": instance.region,
            "ssh": {
                "proxy": {
                    "host": "ssh.runpod.io",
                    "port": 22,
                    "username": f"{instance.id}-64410a1b",
                },
                "direct": {"host": "213.173.104.74", "port": 35558, "username": "root"}
                if ssh_direct
                else None,
            },
            "cost": instance.price_per_hour if status != "EXITED" else 0,
            "runtime": {"uptime": 1, "gpus": [], "ports": ports} if ports is not None else None,
            "createdAt": "2026-01-13T10:02:11Z",
        }

    def v2_list(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        pods = [self._v2_view(i) for i in self.instances.values() if not i.terminated]
        return _rated(SimResponse.json({"pods": pods}))

    def v2_get(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return self.not_found()
        return _rated(SimResponse.json(self._v2_view(instance)))

    def v2_delete(self, request: SimRequest, match: re.Match[str]) -> SimResponse:
        instance = self.instances.get(match["id"])
        if instance is None or instance.terminated:
            return self.not_found()
        self._release(instance)
        return SimResponse(204, b"", dict(RATE_HEADERS))

    def _release(self, instance: SimInstance) -> None:
        self.terminate(instance)
        key = (instance.extra.get("gpu_type_id"), instance.extra.get("cloud"))
        if key in self.stock:
            self.stock[key] += instance.gpu_count

    def startup_env(self, instance: SimInstance) -> dict[str, str]:
        return {**instance.env, "RUNPOD_POD_ID": instance.id, "RUNPOD_PUBLIC_IP": "213.173.104.74"}

    def plant(self, *, label: str, gpu_model: str) -> SimInstance:
        gpu_id = BY_CANONICAL[gpu_model].runpod[0]
        pod_id = "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=14))
        return self.new_instance(
            id=pod_id,
            label=label,
            gpu_model=gpu_model,
            gpu_count=1,
            price_per_hour=self.types[gpu_id]["securePrice"],
            extra={"gpu_type_id": gpu_id, "cloud": "SECURE"},
        )


def _rated(response: SimResponse) -> SimResponse:
    response.headers.update(RATE_HEADERS)
    return response


class _ResolverError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class _ValidationError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
