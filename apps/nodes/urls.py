from django.urls import path

from apps.nodes import api

urlpatterns = [
    path("nodes/", api.NodeListView.as_view(), name="nodes-list"),
    path("nodes/available", api.AvailableView.as_view(), name="nodes-available"),
    path("nodes/register", api.RegisterView.as_view(), name="nodes-register"),
    path("nodes/heartbeat", api.HeartbeatView.as_view(), name="nodes-heartbeat"),
    path("nodes/commands/<uuid:command_id>/ack", api.AckView.as_view(), name="nodes-ack"),
    path("nodes/install.sh", api.install_script, name="nodes-install"),
    path("nodes/agent/<str:filename>", api.agent_wheel_download, name="nodes-agent-wheel"),
]
