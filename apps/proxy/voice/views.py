"""The voice demo page in the customer portal: microphone → `/ws/voice-agent` → speaker, in
plain JavaScript (static/voice/demo.js) speaking the same protocol as any client."""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.views.generic import TemplateView


class VoiceDemoView(LoginRequiredMixin, TemplateView):
    template_name = "voice/demo.html"
