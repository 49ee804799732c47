"""Pod templates: what a pod runs, saved to start from. Users keep their own; operators
publish public ones (`manage.py seed_pod_templates` writes the standard set, idempotently)."""

import uuid
from typing import Any

from django.db import transaction
from django.db.models import Q

from apps.accounts.models import User
from apps.pods.models import PodTemplate

# The public set: (slug, name, description, image, command, env, ports, mount path, GPU).
PUBLIC_TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "slug": "pytorch-jupyter",
        "name": "PyTorch + JupyterLab",
        "description": "PyTorch with CUDA and JupyterLab on port 8888; your work in /workspace.",
        "image": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        "command": [
            "bash",
            "-c",
            "pip install --quiet jupyterlab && jupyter lab --ip=0.0.0.0 --port=8888 "
            "--no-browser --allow-root --ServerApp.token=$JUPYTER_TOKEN "
            "--ServerApp.root_dir=/workspace",
        ],
        "env": {"JUPYTER_TOKEN": ""},
        "ports": [{"container_port": 8888, "protocol": "tcp"}, {"container_port": 22}],
        "volume_mount_path": "/workspace",
        "recommended_gpu_model": "RTX 4090",
    },
    {
        "slug": "vllm",
        "name": "vLLM OpenAI server",
        "description": "vLLM's OpenAI-compatible server on port 8000; set MODEL to a model id.",
        "image": "vllm/vllm-openai:v0.6.4",
        "command": ["bash", "-c", "vllm serve $MODEL --host 0.0.0.0 --port 8000"],
        "env": {"MODEL": "Qwen/Qwen2.5-7B-Instruct", "HF_HOME": "/workspace/hf"},
        "ports": [{"container_port": 8000, "protocol": "tcp"}],
        "volume_mount_path": "/workspace",
        "recommended_gpu_model": "A100 80GB",
    },
    {
        "slug": "comfyui",
        "name": "ComfyUI",
        "description": "ComfyUI's node editor on port 8188; models and outputs in /workspace.",
        "image": "yanwk/comfyui-boot:cu124-slim",
        "command": None,
        "env": {"CLI_ARGS": "--listen 0.0.0.0 --port 8188"},
        "ports": [{"container_port": 8188, "protocol": "tcp"}],
        "volume_mount_path": "/workspace",
        "recommended_gpu_model": "RTX 4090",
    },
    {
        "slug": "ubuntu-cuda",
        "name": "Ubuntu + CUDA shell",
        "description": "Plain Ubuntu 22.04 with the CUDA runtime and an SSH server on 22.",
        "image": "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        "command": [
            "bash",
            "-c",
            "apt-get update -qq && apt-get install -y -qq openssh-server >/dev/null && "
            "mkdir -p /run/sshd && exec /usr/sbin/sshd -D",
        ],
        "env": {},
        "ports": [{"container_port": 22, "protocol": "tcp"}],
        "volume_mount_path": "/workspace",
        "recommended_gpu_model": "RTX 4090",
    },
)


def find_template(*, user: User | None, ref: str) -> PodTemplate | None:
    """The user's own template or a public one, by id or slug (the user's own slug first)."""
    visible = Q(owner__isnull=True, is_public=True)
    if user is not None and user.is_authenticated:
        visible |= Q(owner=user)
    templates = PodTemplate.objects.filter(visible)
    try:
        by_id = templates.filter(pk=uuid.UUID(ref)).first()
    except ValueError:
        by_id = None
    if by_id is not None:
        return by_id
    matches = sorted(templates.filter(slug=ref), key=lambda t: t.owner_id is None)
    return matches[0] if matches else None


def template_defaults(template: PodTemplate) -> dict[str, Any]:
    """A pod request's fields as the template fills them (the request's own values win)."""
    defaults: dict[str, Any] = {
        "name": template.slug,
        "image": template.image,
        "ports": [dict(p) for p in template.ports or []],
    }
    if template.command is not None:
        defaults["command"] = list(template.command)
    if template.recommended_gpu_model:
        defaults["gpu_model"] = template.recommended_gpu_model
        defaults["gpu_count"] = 0 if template.recommended_gpu_model == "CPU" else 1
    return defaults


def template_save(*, owner: User, data: dict[str, Any]) -> PodTemplate:
    """Save a user's own template (validated by the API's serializer)."""
    return PodTemplate.objects.create(owner=owner, is_public=False, **data)


@transaction.atomic
def public_templates_seed() -> tuple[int, int]:
    """Create or update the public templates by slug; (created, updated)."""
    created = updated = 0
    for item in PUBLIC_TEMPLATES:
        fields = {k: v for k, v in item.items() if k != "slug"}
        _, was_created = PodTemplate.objects.update_or_create(
            owner=None, slug=item["slug"], defaults={**fields, "is_public": True}
        )
        created += was_created
        updated += not was_created
    return created, updated
