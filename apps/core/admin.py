"""The back office's name on every admin page."""

from django.contrib import admin

admin.site.site_header = "GPU Cloud operations"
admin.site.site_title = "GPU Cloud operations"
admin.site.index_title = "Back office"
