from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.pods import services
from apps.pods.models import Pod, PodEvent, PodTemplate, UsageRecord, Volume


class PodEventInline(admin.TabularInline):
    model = PodEvent
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "reason")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Pod)
class PodAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "status", "gpu_count", "gpu_model", "node", "created_at")
    list_filter = ("status", "gpu_model")
    search_fields = ("id", "name", "owner__email", "image")
    list_select_related = ("owner", "node")
    readonly_fields = [f.name for f in Pod._meta.fields]
    inlines = (PodEventInline,)
    actions = ("force_stop",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # View-only: a pod changes through its services (the action below), never a form save.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_stop_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pods.change_pod")

    @admin.action(
        description="Force stop (bill to now, remove the container)", permissions=["stop"]
    )
    def force_stop(self, request: HttpRequest, queryset: QuerySet[Pod]) -> None:
        for pod in queryset:
            services.pod_stop(pod=pod, reason=f"force-stopped by operator {request.user}")
            self.log_change(request, pod, "Force-stopped (admin action).")
        self.message_user(request, f"Stopping {queryset.count()} pod(s).")


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ("pod", "owner", "period_start", "seconds", "amount", "provider_share")
    list_select_related = ("pod", "owner")
    search_fields = ("pod__id", "owner__email")
    readonly_fields = [f.name for f in UsageRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Volume)
class VolumeAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "size_gb", "node", "status", "used_bytes", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "name", "owner__email", "node__hostname")
    list_select_related = ("owner", "node")
    readonly_fields = [f.name for f in Volume._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # users create volumes; deletion goes through their DELETE

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PodTemplate)
class PodTemplateAdmin(admin.ModelAdmin):
    """Operators publish templates here (owner empty, public ticked); `manage.py
    seed_pod_templates` writes the standard set."""

    list_display = ("name", "slug", "owner", "is_public", "image", "recommended_gpu_model")
    list_filter = ("is_public",)
    search_fields = ("slug", "name", "image", "owner__email")
