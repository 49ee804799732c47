"""Vast.ai: a marketplace of per-machine offers; rent one by its ask id (fact sheet §1)."""

import json
from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from apps.sourcing.adapters import gpu_names
from apps.sourcing.adapters.base import (
    AlreadyGoneError,
    ExecutionModel,
    Instance,
    InstanceConfig,
    InstanceState,
    LogsUnavailableError,
    MalformedResponseError,
    Offer,
    OfferFilters,
    ProviderAdapter,
    ProviderError,
    RetryableError,
    WorkloadSpec,
    endpoint,
    usd_per_hour_to_micros,
)
from apps.sourcing.adapters.vast_ai import mapping
from apps.sourcing.adapters.vast_ai.schemas import (
    VastCreateAnswer,
    VastInstance,
    VastInstanceList,
    VastLogsAnswer,
    VastOffersAnswer,
)

M = TypeVar("M", bound=BaseModel)
LIST_PAGE = 25  # the v1 list's maximum
LOG_POLLS = 10  # the log file is uploaded asynchronously: poll its URL this many times


def port_env(workload: WorkloadSpec) -> dict[str, str]:
    """Vast exposes a container port through an `env` key in docker's flag syntax
    (`"-p 8080:8080": "1"`, fact sheet §1.9); the host port shows up in `ports` once it runs."""
    out = {}
    for port in workload.ports:
        suffix = "/udp" if port.protocol == "udp" else ""
        out[f"-p {port.container_port}:{port.container_port}{suffix}"] = "1"
    return out


class VastAiAdapter(ProviderAdapter):
    name = mapping.NAME
    execution_model = ExecutionModel.CONTAINER
    supports_spot = True

    def classify(self, response: httpx.Response, op: str) -> ProviderError | None:
        return mapping.classify(response, op)

    def _parse(self, model: type[M], body: object, op: str) -> M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise MalformedResponseError(
                f"{op}: unexpected shape: {exc.errors()[:1]}", provider=self.name
            ) from exc

    async def list_offers(self, filters: OfferFilters) -> list[Offer]:
        query: dict[str, object] = {
            "verified": {"eq": True},
            "external": {"eq": False},
            "rentable": {"eq": True},
            "rented": {"eq": False},
            "type": "bid" if filters.spot else "on-demand",
            "order": [["dph_total", "asc"]],
            "limit": filters.limit,
        }
        if filters.gpu_model:
            names = gpu_names.vast_names(filters.gpu_model)
            if not names:
                return []
            query["gpu_name"] = {"in": list(names)}
        if filters.gpu_count:
            query["num_gpus"] = {"eq": filters.gpu_count}
        response = await self.request("POST", "/api/v0/bundles/", op="offers", json_body=query)
        answer = self._parse(VastOffersAnswer, self.json(response, "offers"), "offers")
        offers = []
        for raw in answer.offers:
            if raw.cpu_cores is None:
                continue  # incomplete listing (gpuhunt skips these too)
            model = gpu_names.from_vast(raw.gpu_name, raw.gpu_ram)
            if model is None or (filters.gpu_model and model != filters.gpu_model):
                continue
            # A bid rental pays its bid: the lowest one the host accepts is the spot price.
            dollars = raw.min_bid if filters.spot and raw.min_bid else raw.dph_total
            price = usd_per_hour_to_micros(dollars)
            offer = Offer(
                provider=self.name,
                offer_id=str(raw.id),
                gpu_model=model,
                gpu_count=raw.num_gpus,
                vram_gb=round((raw.gpu_ram or 0) / 1000) or gpu_names.vram_gb(model),
                price_per_hour=price,
                region=(raw.geolocation or "").rsplit(",", 1)[-1].strip(),
                reliability=raw.reliability2 or raw.reliability or 0.0,
                spot=filters.spot,
                provider_gpu_name=raw.gpu_name,
            )
            if (
                filters.max_price_per_gpu_hour is not None
                and offer.price_per_gpu_hour > filters.max_price_per_gpu_hour
            ):
                continue
            offers.append(offer)
        return offers

    def create_body(self, config: InstanceConfig) -> dict[str, object]:
        """The customer's container itself (runtype `args`: the image's ENTRYPOINT is kept and
        `args` replaces its CMD, no SSH injected); without a workload, the legacy machine-style
        rental whose `onstart` runs a script."""
        workload = config.workload
        if workload is None:
            return {
                "client_id": "me",
                "image": config.image,
                "disk": config.disk_gb,
                "label": config.label,
                "runtype": "ssh_direct",
                "env": dict(config.env),
                "onstart": config.startup_script,
                "cancel_unavail": True,
            }
        body: dict[str, object] = {
            "client_id": "me",
            "image": workload.image,
            "disk": max(workload.disk_gb, 8),  # Vast's minimum
            "label": config.label,
            "runtype": "args",
            "env": {**workload.env, **port_env(workload)},
            "cancel_unavail": True,
        }
        if workload.command:
            body["args"] = list(workload.command)
        return body

    async def create_instance(self, offer: Offer, config: InstanceConfig) -> Instance:
        body = self.create_body(config)
        if config.bid_per_gpu_hour is not None:
            body["price"] = config.bid_per_gpu_hour * offer.gpu_count / 1_000_000
        elif config.spot:
            body["price"] = offer.price_per_hour / 1_000_000  # the bid is per machine
        response = await self.request(
            "PUT", f"/api/v0/asks/{offer.offer_id}/", op="create", json_body=body, idempotent=False
        )
        answer = self._parse(VastCreateAnswer, self.json(response, "create"), "create")
        if answer.new_contract is None:
            raise MalformedResponseError(
                "create: no new_contract in the answer", provider=self.name
            )
        return Instance(
            provider=self.name,
            instance_id=str(answer.new_contract),
            label=config.label,
            state=InstanceState.CREATING,
            gpu_model=offer.gpu_model,
            gpu_count=offer.gpu_count,
            price_per_hour=offer.price_per_hour,
        )

    def _instance(self, raw: VastInstance) -> Instance:
        model = gpu_names.from_vast(raw.gpu_name, raw.gpu_ram) if raw.gpu_name else None
        ssh_port = None
        endpoints: dict[str, str] = {}
        for key, bindings in (raw.ports or {}).items():
            try:
                host_port = int(bindings[0]["HostPort"])  # a string on the wire
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if key == "22/tcp":
                ssh_port = host_port
            if raw.public_ipaddr:
                endpoints[str(key)] = endpoint(raw.public_ipaddr, host_port)
        return Instance(
            provider=self.name,
            instance_id=str(raw.id),
            label=raw.label or "",
            state=mapping.state_of(raw),
            provider_status=raw.actual_status or "",
            gpu_model=model,
            gpu_count=raw.num_gpus or 0,
            price_per_hour=usd_per_hour_to_micros(raw.dph_total) if raw.dph_total else None,
            public_ip=raw.public_ipaddr or "",
            ssh_port=ssh_port,
            message=raw.status_msg or "",
            endpoints=endpoints,
            exit_code=mapping.exit_code(raw.status_msg),
        )

    async def get_instance(self, instance_id: str) -> Instance:
        response = await self.request(
            "GET", f"/api/v0/instances/{instance_id}/", op="get", params={"owner": "me"}
        )
        body = self.json(response, "get")
        if not isinstance(body, dict) or "instances" not in body:
            raise MalformedResponseError("get: no `instances` key", provider=self.name)
        if body["instances"] is None:  # the CLI's "not found"
            raise AlreadyGoneError(f"instance {instance_id} not found", provider=self.name)
        return self._instance(self._parse(VastInstance, body["instances"], "get"))

    async def list_instances(self) -> list[Instance]:
        found: list[Instance] = []
        token: str | None = None
        while True:
            params = {
                "limit": LIST_PAGE,
                "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
                "select_filters": json.dumps({}),
            }
            if token:
                params["after_token"] = token
            response = await self.request("GET", "/api/v1/instances/", op="list", params=params)
            page = self._parse(VastInstanceList, self.json(response, "list"), "list")
            found += [self._instance(raw) for raw in page.instances]
            if not page.next_token:
                return found
            token = page.next_token

    async def fetch_logs(self, instance_id: str, *, tail: int = 200) -> str:
        """Vast uploads the container's log on request and answers where it will be
        (`result_url`); the file appears there shortly after (fact sheet §1.2)."""
        response = await self.request(
            "PUT",
            f"/api/v0/instances/request_logs/{instance_id}/",
            op="logs",
            json_body={"tail": str(tail)},
        )
        answer = self._parse(VastLogsAnswer, self.json(response, "logs"), "logs")
        if not answer.result_url:
            raise MalformedResponseError("logs: no result_url", provider=self.name)
        # Its own client: the log file lives on storage that must never see our API key.
        async with httpx.AsyncClient(timeout=self.policy.timeout) as storage:
            for _ in range(LOG_POLLS):
                try:
                    got = await storage.get(answer.result_url)
                except httpx.HTTPError as exc:
                    raise RetryableError(f"logs: {exc}", provider=self.name) from exc
                if got.status_code == 200:
                    return got.text
                if got.status_code not in (403, 404):
                    raise RetryableError(
                        f"logs: HTTP {got.status_code}", provider=self.name, status=got.status_code
                    )
                await self._sleep(0.5)
        raise LogsUnavailableError("The provider has not published the log yet; try again.")

    async def terminate_instance(self, instance_id: str) -> None:
        try:
            await self.request(
                "DELETE", f"/api/v0/instances/{instance_id}/", op="terminate", json_body={}
            )
        except AlreadyGoneError:
            return
        except ProviderError:
            raise
