"""Price bands: what a provider may ask per GPU-hour for each GPU model on a node."""

from dataclasses import dataclass

from django.conf import settings

from apps.providers.models import GpuPriceBand


@dataclass(frozen=True)
class Band:
    gpu_model: str
    floor: int
    ceiling: int


def price_bands(gpu_models: set[str]) -> dict[str, Band]:
    """The operator's band for each model, else PROVIDER_DEFAULT_PRICE_BAND_PERCENT of the
    platform's default price for it."""
    set_bands = {
        b.gpu_model: Band(b.gpu_model, b.floor, b.ceiling)
        for b in GpuPriceBand.objects.filter(gpu_model__in=gpu_models)
    }
    low, high = settings.PROVIDER_DEFAULT_PRICE_BAND_PERCENT
    defaults: dict[str, int] = settings.GPU_DEFAULT_PRICES
    out: dict[str, Band] = {}
    for model in gpu_models:
        if model in set_bands:
            out[model] = set_bands[model]
        else:
            base = defaults.get(model, defaults["default"])
            out[model] = Band(model, base * low // 100, base * high // 100)
    return out
