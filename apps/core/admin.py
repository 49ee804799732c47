"""The back office's name on every admin page, and what the apps' admins share."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

admin.site.site_header = "GPU Cloud operations"
admin.site.site_title = "GPU Cloud operations"
admin.site.index_title = "Back office"


class ReadOnlyInline(admin.TabularInline):
    """Rows shown under their parent, never added, changed or deleted there (events, GPUs,
    replicas, fee history)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Every shown field is read-only, so saving the parent's page builds no inline forms
        # (a non-editable field such as NodeEvent.at would make Django refuse to build one).
        return self.fields or super().get_readonly_fields(request, obj)
