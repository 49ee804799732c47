from django.contrib import admin

from apps.sourcing.models import (
    InstanceEvent,
    LaunchStat,
    OfferBookEntry,
    OrphanInstance,
    ProvisionedInstance,
    UpstreamCharge,
)


class InstanceEventInline(admin.TabularInline):
    model = InstanceEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "from_status", "to_status", "reason")


@admin.register(ProvisionedInstance)
class ProvisionedInstanceAdmin(admin.ModelAdmin):
    list_display = (
        "label",
        "provider",
        "provider_instance_id",
        "gpu_model",
        "gpu_count",
        "status",
        "price_per_gpu_hour",
        "upstream_price_per_hour",
        "created_at",
    )
    list_filter = ("status", "provider", "gpu_model")
    search_fields = ("label", "provider_instance_id", "pod__id", "node__id")
    readonly_fields = [f.name for f in ProvisionedInstance._meta.fields]
    inlines = [InstanceEventInline]


@admin.register(OfferBookEntry)
class OfferBookEntryAdmin(admin.ModelAdmin):
    list_display = (
        "provider",
        "offer_id",
        "gpu_model",
        "gpu_count",
        "price_per_gpu_hour",
        "stale",
        "fetched_at",
    )
    list_filter = ("provider", "gpu_model", "stale")


@admin.register(LaunchStat)
class LaunchStatAdmin(admin.ModelAdmin):
    list_display = ("provider", "gpu_model", "attempts", "successes", "failures", "activations")


@admin.register(OrphanInstance)
class OrphanInstanceAdmin(admin.ModelAdmin):
    list_display = ("provider", "provider_instance_id", "label", "first_seen_at", "terminated_at")


@admin.register(UpstreamCharge)
class UpstreamChargeAdmin(admin.ModelAdmin):
    list_display = ("instance", "pod", "provider", "gpu_model", "period_start", "seconds", "amount")
    list_filter = ("provider", "gpu_model")
