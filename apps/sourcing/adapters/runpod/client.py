"""RunPod: pick a GPU type and cloud, RunPod finds the machine (fact sheet §2). The catalogue
and creates (on-demand and spot) go through GraphQL; get, list and terminate through REST v2."""

import base64
import shlex
from typing import Any

import httpx
from pydantic import ValidationError

from apps.sourcing.adapters import gpu_names
from apps.sourcing.adapters.base import (
    AlreadyGoneError,
    CapacityError,
    ExecutionModel,
    FatalError,
    Instance,
    InstanceConfig,
    InstanceState,
    MalformedResponseError,
    Offer,
    OfferFilters,
    ProviderAdapter,
    ProviderError,
    WorkloadSpec,
    endpoint,
    usd_per_hour_to_micros,
)
from apps.sourcing.adapters.runpod import mapping
from apps.sourcing.adapters.runpod.schemas import CreatedPod, GpuType, V2Pod, V2PodList

GPU_TYPES_QUERY = """
query GpuTypes($lowestPriceInput: GpuLowestPriceInput) {
  gpuTypes {
    id displayName memoryInGb maxGpuCount secureCloud communityCloud
    securePrice communityPrice secureSpotPrice communitySpotPrice
    lowestPrice(input: $lowestPriceInput) { minimumBidPrice uninterruptablePrice stockStatus }
  }
}
"""
CREATE_ON_DEMAND = """
mutation Deploy($input: PodFindAndDeployOnDemandInput) {
  podFindAndDeployOnDemand(input: $input) {
    id desiredStatus imageName env machineId machine { podHostId }
  }
}
"""
CREATE_SPOT = """
mutation Rent($input: PodRentInterruptableInput!) {
  podRentInterruptable(input: $input) {
    id desiredStatus imageName env machineId machine { podHostId }
  }
}
"""


def docker_args(script: str) -> str:
    """The startup script as a container command that survives RunPod's quoting: base64 in a
    single-quoted `bash -c` (the way SkyPilot sends its setup)."""
    encoded = base64.b64encode(script.encode()).decode()
    return "bash -c " + shlex.quote(f"echo {encoded} | base64 -d | bash")


def ports_field(workload: WorkloadSpec, *, provider: str) -> str:
    """RunPod's comma string (`"8888/http,22/tcp"`, no spaces); it has TCP and proxied HTTP
    ports, no UDP."""
    parts = []
    for port in workload.ports:
        if port.protocol == "udp":
            raise FatalError(
                f"port {port.container_port}/udp: this cloud exposes TCP and HTTP ports only",
                provider=provider,
            )
        parts.append(f"{port.container_port}/{port.protocol}")
    return ",".join(parts)


def _first_ip(pod: V2Pod) -> str | None:
    for port in (pod.runtime or {}).get("ports") or []:
        if isinstance(port, dict) and port.get("ip") and port.get("type") == "tcp":
            return str(port["ip"])
    return None


class RunPodAdapter(ProviderAdapter):
    name = mapping.NAME
    execution_model = ExecutionModel.CONTAINER
    supports_spot = True

    def classify(self, response: httpx.Response, op: str) -> ProviderError | None:
        return mapping.classify(response, op)

    async def _graphql(
        self, query: str, variables: dict[str, Any], op: str, *, idempotent: bool = True
    ) -> dict[str, Any]:
        response = await self.request(
            "POST",
            "/graphql",
            op=op,
            json_body={"query": query, "variables": variables},
            idempotent=idempotent,
        )
        body = self.json(response, op)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise MalformedResponseError(f"{op}: no `data` object", provider=self.name)
        return body["data"]

    async def list_offers(self, filters: OfferFilters) -> list[Offer]:
        count = filters.gpu_count or 1
        data = await self._graphql(
            GPU_TYPES_QUERY, {"lowestPriceInput": {"gpuCount": count}}, "offers"
        )
        try:
            types = [GpuType.model_validate(t) for t in data.get("gpuTypes") or []]
        except ValidationError as exc:
            raise MalformedResponseError(f"offers: {exc.errors()[:1]}", provider=self.name) from exc
        offers: list[Offer] = []
        for gpu in types:
            model = gpu_names.from_runpod(gpu.id)
            if model is None or (filters.gpu_model and model != filters.gpu_model):
                continue
            if gpu.lowestPrice is None or gpu.lowestPrice.stockStatus is None:
                continue  # no stock anywhere
            if gpu.maxGpuCount is not None and count > gpu.maxGpuCount:
                continue
            for cloud, available, price in (
                (
                    "SECURE",
                    gpu.secureCloud,
                    gpu.secureSpotPrice if filters.spot else gpu.securePrice,
                ),
                (
                    "COMMUNITY",
                    gpu.communityCloud,
                    gpu.communitySpotPrice if filters.spot else gpu.communityPrice,
                ),
            ):
                if not available or not price:
                    continue
                per_gpu = usd_per_hour_to_micros(price)
                if (
                    filters.max_price_per_gpu_hour is not None
                    and per_gpu > filters.max_price_per_gpu_hour
                ):
                    continue
                stock = gpu.lowestPrice.stockStatus
                offers.append(
                    Offer(
                        provider=self.name,
                        offer_id=f"{gpu.id}|{cloud}|{count}",
                        gpu_model=model,
                        gpu_count=count,
                        vram_gb=gpu.memoryInGb or gpu_names.vram_gb(model),
                        price_per_hour=per_gpu * count,
                        reliability={"High": 0.99, "Medium": 0.97, "Low": 0.93}.get(stock, 0.9)
                        if cloud == "SECURE"
                        else {"High": 0.97, "Medium": 0.95, "Low": 0.9}.get(stock, 0.88),
                        spot=filters.spot,
                        provider_gpu_name=gpu.id,
                        extra={"gpu_type_id": gpu.id, "cloud_type": cloud},
                    )
                )
        return offers[: filters.limit]

    async def create_instance(self, offer: Offer, config: InstanceConfig) -> Instance:
        gpu_type_id = str(offer.extra.get("gpu_type_id") or offer.offer_id.split("|")[0])
        cloud = str(offer.extra.get("cloud_type") or "SECURE")
        workload = config.workload
        pod_input: dict[str, Any] = {
            "name": config.label,
            "gpuTypeId": gpu_type_id,
            "gpuCount": offer.gpu_count,
            "cloudType": cloud,
            "volumeInGb": 0,
            "supportPublicIp": True,
        }
        if workload is not None:
            # The customer's container is the pod: its image, command, env, ports and disk.
            pod_input.update(
                imageName=workload.image,
                containerDiskInGb=workload.disk_gb,
                ports=ports_field(workload, provider=self.name),
                env=[{"key": k, "value": v} for k, v in workload.env.items()],
                startSsh=False,
            )
            if workload.command:
                pod_input["dockerArgs"] = shlex.join(workload.command)
        else:
            pod_input.update(
                imageName=config.image,
                containerDiskInGb=config.disk_gb,
                startSsh=True,
                ports="22/tcp",
                env=[{"key": k, "value": v} for k, v in config.env.items()],
            )
            if config.startup_script:
                pod_input["dockerArgs"] = docker_args(config.startup_script)
        bid = config.bid_per_gpu_hour
        if bid is None and config.spot:
            bid = offer.price_per_gpu_hour
        if bid is not None:
            pod_input["bidPerGpu"] = bid / 1_000_000
            pod_input["volumeMountPath"] = "/workspace"
            field, query = "podRentInterruptable", CREATE_SPOT
        else:
            field, query = "podFindAndDeployOnDemand", CREATE_ON_DEMAND
        data = await self._graphql(query, {"input": pod_input}, "create", idempotent=False)
        if data.get(field) is None:
            # A null result without errors is a failed create (fact sheet §2.7).
            raise CapacityError(f"{field} returned null", provider=self.name)
        try:
            created = CreatedPod.model_validate(data[field])
        except ValidationError as exc:
            raise MalformedResponseError(f"create: {exc.errors()[:1]}", provider=self.name) from exc
        return Instance(
            provider=self.name,
            instance_id=created.id,
            label=config.label,
            state=InstanceState.CREATING,
            provider_status=created.desiredStatus or "",
            gpu_model=offer.gpu_model,
            gpu_count=offer.gpu_count,
            price_per_hour=offer.price_per_hour,
        )

    def _endpoints(self, pod: V2Pod) -> dict[str, str]:
        """From `runtime.ports` (null until the container is up): a TCP port answers on its
        public ip and port; an HTTP port through RunPod's proxy."""
        out: dict[str, str] = {}
        for port in (pod.runtime or {}).get("ports") or []:
            if not isinstance(port, dict) or port.get("private") is None:
                continue
            if port.get("type") == "http":
                out[f"{port['private']}/http"] = (
                    f"https://{pod.id}-{port['private']}.proxy.runpod.net"
                )
            elif port.get("ip") and port.get("public") is not None:
                out[f"{port['private']}/tcp"] = endpoint(str(port["ip"]), port["public"])
        return out

    def _instance(self, pod: V2Pod) -> Instance:
        direct = (pod.ssh or {}).get("direct") or {}
        gpu = pod.gpu
        return Instance(
            provider=self.name,
            instance_id=pod.id,
            label=pod.name or "",
            state=mapping.state_of(pod),
            provider_status=pod.status or "",
            gpu_model=gpu_names.from_runpod(gpu.id) if gpu and gpu.id else None,
            gpu_count=(gpu.count or 0) if gpu else 0,
            price_per_hour=usd_per_hour_to_micros(pod.cost) if pod.cost else None,
            public_ip=str(direct.get("host") or _first_ip(pod) or ""),
            ssh_port=direct.get("port"),
            endpoints=self._endpoints(pod),
        )

    async def get_instance(self, instance_id: str) -> Instance:
        response = await self.request("GET", f"/v2/pods/{instance_id}", op="get")
        try:
            pod = V2Pod.model_validate(self.json(response, "get"))
        except ValidationError as exc:
            raise MalformedResponseError(f"get: {exc.errors()[:1]}", provider=self.name) from exc
        return self._instance(pod)

    async def list_instances(self) -> list[Instance]:
        found: list[Instance] = []
        params: dict[str, Any] = {}
        while True:
            response = await self.request("GET", "/v2/pods", op="list", params=params)
            try:
                page = V2PodList.model_validate(self.json(response, "list"))
            except ValidationError as exc:
                raise MalformedResponseError(
                    f"list: {exc.errors()[:1]}", provider=self.name
                ) from exc
            found += [self._instance(p) for p in page.pods]
            pagination = page.pagination or {}
            if not pagination.get("hasNextPage") or not pagination.get("nextCursor"):
                return found
            params = {"cursor": pagination["nextCursor"]}

    async def terminate_instance(self, instance_id: str) -> None:
        try:
            await self.request("DELETE", f"/v2/pods/{instance_id}", op="terminate")
        except AlreadyGoneError:
            return
