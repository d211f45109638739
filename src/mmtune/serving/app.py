"""The HTTP service: FastAPI routes over a Batcher, and the page to try it.

    GET  /             the page (resources/serve_page.html: no external scripts, styles or fonts)
    GET  /health       {"status": "ok", ...}
    GET  /v1/labels    the label order
    POST /v1/classify  one post or a list (requests.py) -> probabilities per label and the decision
    GET  /openapi.json, /docs   FastAPI's schema and its viewer

Every refused request is a 4xx JSON body {"error": {"field": ..., "message": ...}}; the service keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from mmtune.data.post import Post
from mmtune.serving.batcher import Batcher
from mmtune.serving.requests import (
    BadRequest,
    Limits,
    MemoryImages,
    make_post,
    parse_json,
    parse_multipart,
    posts_from_json,
)


class PostIn(BaseModel):
    caption: str = Field(description="the post's text (may be empty)")
    images: list[str] = Field(default=[], description="images as base64 (or data: URLs)")
    id: str | None = Field(default=None, description="returned as given")


class ClassifyIn(BaseModel):
    posts: list[PostIn]


class Result(BaseModel):
    id: str | None
    label: str = Field(description="the decision: the most probable label")
    probabilities: dict[str, float]


class ClassifyOut(BaseModel):
    labels: list[str]
    results: list[Result]


class ErrorOut(BaseModel):
    error: dict[str, str] = Field(description="field: where in the request; message: what is wrong")


_BODY_SCHEMA = {
    "required": True,
    "content": {
        "application/json": {"schema": {"anyOf": [
            {"$ref": "#/components/schemas/PostIn"}, {"$ref": "#/components/schemas/ClassifyIn"},
            {"type": "array", "items": {"$ref": "#/components/schemas/PostIn"}}]}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["caption"], "properties": {
            "caption": {"type": "string"},
            "images": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    },
}


# The page loads nothing from elsewhere: its own inline script and style, images the person picks, this API.
_PAGE_POLICY = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:"


def page_html() -> str:
    return resources.files("mmtune").joinpath("resources/serve_page.html").read_text(encoding="utf-8")


def create_app(batcher: Batcher, labels: list[str], limits: Limits, page: str | None = None,
               about: dict[str, Any] | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="mmtune classifier", version="1", lifespan=lifespan,
                  description="Image + text post classification with a model trained by mmtune.")
    body = page if page is not None else page_html()

    @app.exception_handler(BadRequest)
    async def refused(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": {"field": exc.field, "message": exc.message}}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(body, headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = batcher.stats
        return {"status": "ok", "forwards": stats.forwards, "posts": stats.posts,
                "model_busy_s": round(stats.busy_s, 3), **(about or {})}

    @app.get("/v1/labels")
    async def get_labels() -> dict[str, list[str]]:
        return {"labels": labels}

    @app.post("/v1/classify", response_model=ClassifyOut, openapi_extra={"requestBody": _BODY_SCHEMA},
              responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}})
    async def classify(request: Request) -> ClassifyOut:
        raw = await read_body(request, limits.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        # Decoding and checking images takes milliseconds: in a thread, the loop meanwhile serves others.
        reading = asyncio.ensure_future(asyncio.to_thread(read_posts, raw, content_type, limits))
        try:
            posts, ids, memory = await asyncio.shield(reading)
        except asyncio.CancelledError:  # the thread still finishes: its images are closed when it does
            reading.add_done_callback(_close_images)
            raise
        probs = await batcher.submit(posts, release=memory.close)  # images stay open until the model has read them
        results = [Result(id=ids[i], label=labels[int(row.argmax())],
                          probabilities={label: float(p) for label, p in zip(labels, row)})
                   for i, row in enumerate(probs)]
        return ClassifyOut(labels=labels, results=results)

    _add_schemas(app)
    return app


def read_posts(raw: bytes, content_type: str,
               limits: Limits) -> tuple[list[Post], list[str | None], MemoryImages]:
    """The checked posts of a body (JSON or multipart), the ids the client gave them, and their images' files
    (the caller closes them; a refused body closes them here)."""
    memory = MemoryImages()
    try:
        if content_type.startswith("multipart/form-data"):
            caption, images = parse_multipart(raw, content_type, limits)
            return [make_post(0, caption, images[:limits.max_images], len(images), "", limits, memory)], [None], \
                memory
        items = parse_json(raw, limits)
        ids = [item.get("id") if isinstance(item.get("id"), str) else None for item in items]
        return posts_from_json(items, limits, memory), ids, memory
    except BaseException:
        memory.close()
        raise


def _close_images(reading: asyncio.Future) -> None:
    if not reading.cancelled() and reading.exception() is None:
        reading.result()[2].close()


def _add_schemas(app: FastAPI) -> None:
    """The request models the hand-read body refers to, in the OpenAPI components."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (PostIn, ClassifyIn):
                components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (a declared length over it is refused unread)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, "body", f"{declared} bytes > {limit} per request")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "body", f"more than {limit} bytes per request")
        chunks.append(chunk)
    return b"".join(chunks)
