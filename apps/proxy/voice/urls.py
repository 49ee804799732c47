from django.urls import path

from apps.proxy.voice.views import VoiceDemoView

urlpatterns = [
    path("demo", VoiceDemoView.as_view(), name="voice-demo"),
]
