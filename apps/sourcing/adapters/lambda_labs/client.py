"""Lambda Cloud: fixed instance types per region, full VMs started with cloud-init
`user_data` (fact sheet §3)."""

from typing import Any

import httpx
from pydantic import ValidationError

from apps.sourcing.adapters import gpu_names
from apps.sourcing.adapters.base import (
    AlreadyGoneError,
    CapacityError,
    ExecutionModel,
    Instance,
    InstanceConfig,
    InstanceState,
    MalformedResponseError,
    Offer,
    OfferFilters,
    ProviderAdapter,
    ProviderError,
)
from apps.sourcing.adapters.lambda_labs import mapping
from apps.sourcing.adapters.lambda_labs.schemas import (
    LambdaInstance,
    LaunchAnswer,
    TypeAvailability,
)

API = "/api/v1"


class LambdaLabsAdapter(ProviderAdapter):
    """A VM cloud: `user_data` installs our agent from our server, the agent registers with
    the instance's token, and pods run in Docker on it."""

    name = mapping.NAME
    execution_model = ExecutionModel.VM

    def classify(self, response: httpx.Response, op: str) -> ProviderError | None:
        return mapping.classify(response, op)

    def _data(self, response: Any, op: str) -> Any:
        body = self.json(response, op)
        if not isinstance(body, dict) or "data" not in body:
            raise MalformedResponseError(f"{op}: no `data` envelope", provider=self.name)
        return body["data"]

    async def list_offers(self, filters: OfferFilters) -> list[Offer]:
        if filters.spot:
            return []  # Lambda has no spot market
        response = await self.request("GET", f"{API}/instance-types", op="offers")
        data = self._data(response, "offers")
        if not isinstance(data, dict):
            raise MalformedResponseError("offers: `data` is not an object", provider=self.name)
        offers: list[Offer] = []
        for raw in data.values():
            try:
                item = TypeAvailability.model_validate(raw)
            except ValidationError as exc:
                raise MalformedResponseError(
                    f"offers: {exc.errors()[:1]}", provider=self.name
                ) from exc
            parsed = gpu_names.from_lambda(item.instance_type.description)
            if parsed is None:
                continue
            model, count, vram = parsed
            if filters.gpu_model and model != filters.gpu_model:
                continue
            if filters.gpu_count and count != filters.gpu_count:
                continue
            price = item.instance_type.price_cents_per_hour * 10_000
            offer_template = {
                "provider": self.name,
                "gpu_model": model,
                "gpu_count": count,
                "vram_gb": vram,
                "price_per_hour": price,
                "reliability": 0.99,
                "provider_gpu_name": item.instance_type.name,
            }
            for region in item.regions_with_capacity_available:
                offer = Offer(
                    offer_id=f"{item.instance_type.name}|{region.name}",
                    region=region.name,
                    extra={"instance_type": item.instance_type.name, "region": region.name},
                    **offer_template,  # type: ignore[arg-type]
                )
                if (
                    filters.max_price_per_gpu_hour is None
                    or offer.price_per_gpu_hour <= filters.max_price_per_gpu_hour
                ):
                    offers.append(offer)
        return offers[: filters.limit]

    async def create_instance(self, offer: Offer, config: InstanceConfig) -> Instance:
        instance_type, _, region = offer.offer_id.partition("|")
        body: dict[str, Any] = {
            "region_name": offer.extra.get("region") or region,
            "instance_type_name": offer.extra.get("instance_type") or instance_type,
            "ssh_key_names": [config.ssh_key_name] if config.ssh_key_name else [],
            "quantity": 1,
            "name": config.label[:64],
        }
        if config.startup_script:
            script = config.startup_script
            if not script.startswith("#!") and not script.startswith("#cloud-config"):
                script = "#!/bin/bash\n" + script
            body["user_data"] = script
        response = await self.request(
            "POST",
            f"{API}/instance-operations/launch",
            op="create",
            json_body=body,
            idempotent=False,
        )
        try:
            answer = LaunchAnswer.model_validate(self._data(response, "create"))
        except ValidationError as exc:
            raise MalformedResponseError(f"create: {exc.errors()[:1]}", provider=self.name) from exc
        if not answer.instance_ids:
            raise CapacityError("launch returned no instance ids", provider=self.name)
        return Instance(
            provider=self.name,
            instance_id=answer.instance_ids[0],
            label=config.label[:64],
            state=InstanceState.CREATING,
            gpu_model=offer.gpu_model,
            gpu_count=offer.gpu_count,
            price_per_hour=offer.price_per_hour,
        )

    def _instance(self, raw: LambdaInstance) -> Instance:
        model, count = None, 0
        price = None
        if raw.instance_type is not None:
            parsed = gpu_names.from_lambda(raw.instance_type.description)
            if parsed:
                model, count, _ = parsed
            price = raw.instance_type.price_cents_per_hour * 10_000
        return Instance(
            provider=self.name,
            instance_id=raw.id,
            label=raw.name or "",
            state=mapping.state_of(raw),
            provider_status=raw.status,
            gpu_model=model,
            gpu_count=count,
            price_per_hour=price,
            public_ip=raw.ip or "",
            ssh_port=22 if raw.ip else None,
        )

    async def get_instance(self, instance_id: str) -> Instance:
        response = await self.request("GET", f"{API}/instances/{instance_id}", op="get")
        try:
            return self._instance(LambdaInstance.model_validate(self._data(response, "get")))
        except ValidationError as exc:
            raise MalformedResponseError(f"get: {exc.errors()[:1]}", provider=self.name) from exc

    async def list_instances(self) -> list[Instance]:
        response = await self.request("GET", f"{API}/instances", op="list")
        data = self._data(response, "list")
        if not isinstance(data, list):
            raise MalformedResponseError("list: `data` is not a list", provider=self.name)
        try:
            return [self._instance(LambdaInstance.model_validate(raw)) for raw in data]
        except ValidationError as exc:
            raise MalformedResponseError(f"list: {exc.errors()[:1]}", provider=self.name) from exc

    async def terminate_instance(self, instance_id: str) -> None:
        try:
            await self.request(
                "POST",
                f"{API}/instance-operations/terminate",
                op="terminate",
                json_body={"instance_ids": [instance_id]},
            )
        except AlreadyGoneError:
            return
