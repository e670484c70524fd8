"""The FastAPI app: routes that call the retriever's public API, error mapping, limits, the page.

Every route is a plain (synchronous) function, so FastAPI runs it in its thread pool and slow
encoder or store work never blocks the event loop. The retriever is opened by the caller, shared
by every request, and closed by the caller.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import mimetypes
import time
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..errors import (
    InputError,
    MMGRError,
    NotBuiltError,
    NotFoundError,
    StoreError,
)
from ..images import load_image
from ..types import CODE_MODALITIES, Hit, PointId, normalize_id, prefix_key
from .models import (
    AddResponse,
    AddTextsRequest,
    BrowseNode,
    BrowseResponse,
    DeleteResponse,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    HitModel,
    KnnRequest,
    RelatedResponse,
    SearchRequest,
    SearchResponse,
)
from .settings import ServiceSettings
from .thumbs import ThumbnailCache

if TYPE_CHECKING:
    from ..retriever import MultimodalRetriever

logger = logging.getLogger(__name__)
STATIC = files("mmgr_qdrant.service") / "static"
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The request is unusable (InputError, QuerySyntaxError, ...)."},
    404: {"model": ErrorBody, "description": "No such document (NotFoundError)."},
}


def status_for(exc: MMGRError) -> int:
    """The HTTP status of a library error: 404 not found, 409 not built, 503 store down, else 400."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, NotBuiltError):
        return 409
    if isinstance(exc, StoreError):  # the store, not the request, failed: a client may retry later
        return 503
    return 400


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, before any route reads them.

    A declared ``Content-Length`` is checked at once; a chunked body is read up to the limit and
    replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, "PayloadTooLarge", f"The request body is over this service's limit of {self.limit:,} bytes; send smaller files or fewer at once.")
        await response(scope, receive, send)


def build_app(r: MultimodalRetriever, settings: ServiceSettings) -> FastAPI:
    """The app over ``r`` with ``settings``; see :func:`mmgr_qdrant.service.create_app`."""
    app = FastAPI(
        title="mmgr-qdrant",
        version=__version__,
        description=f"Multimodal generative retrieval over collection `{r.config.collection}`: search by text, image, vector or "
        "boolean query; read, browse and (with writes allowed) add or delete documents.",
    )
    app.state.retriever = r
    app.state.settings = settings
    thumbs = ThumbnailCache(settings.thumbnail_cache, settings.thumbnail_px)
    app.state.thumbnails = thumbs
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])

    # -- errors: one JSON shape, never a traceback ---------------------------------------------
    @app.exception_handler(MMGRError)
    async def _mmgr_error(request: Request, exc: MMGRError) -> JSONResponse:
        return _error(status_for(exc), type(exc).__name__, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "ValidationError", _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse({"error": _reason(exc.status_code), "message": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "InternalError", f"The server failed unexpectedly ({type(exc).__name__}); the details are in its log.")

    # -- helpers ------------------------------------------------------------------------------
    def hit_dict(h: Hit, *, relation: bool = False, explain: bool = True) -> dict[str, Any]:
        """A hit in :class:`HitModel`'s shape, as a plain dict (the search path skips re-validating it)."""
        ref = str(h.id)
        info = _jsonable(h.explain) if explain and h.explain else None
        rel = None
        if relation and h.explain:
            rel = h.explain.get("relation")
            info = None
        return {"id": h.id, "ref": ref, "score": float(h.score), "docid": [int(c) for c in h.docid], "docid_str": prefix_key(h.docid),
                "modality": h.modality, "payload": _jsonable(h.payload), "text": h.text, "file": Path(h.uri).name if h.uri else None,
                "thumbnail": f"/items/{ref}/thumbnail" if h.uri and h.modality in ("image", "video") else None, "relation": rel,
                "explain": info, "t": h.t, "video": None if h.video is None else str(h.video),
                "media": f"/items/{ref}/media#t={h.t:g}" if h.uri and h.modality == "video" and h.t is not None else None}

    def hit_model(h: Hit, *, relation: bool = False, explain: bool = True) -> HitModel:
        return HitModel(**hit_dict(h, relation=relation, explain=explain))

    def check_k(k: int) -> int:
        if k < 1 or k > settings.max_k:
            raise InputError(f"k={k} is out of range; ask for 1 to {settings.max_k} hits.")
        return k

    def check_text(text: str | None, what: str) -> None:
        if text is not None and len(text) > settings.max_query_chars:
            raise InputError(f"The {what} has {len(text):,} characters, over this service's limit of {settings.max_query_chars:,}; shorten it.")

    def require_writes(x_api_key: str | None = Header(None, description="The service's write key.")) -> None:
        if not settings.allow_writes:
            raise StarletteHTTPException(403, "This service is read-only; start it with --allow-writes and --write-key to add or delete documents.")
        if not x_api_key or not hmac.compare_digest(x_api_key.encode(), (settings.api_key or "").encode()):
            raise StarletteHTTPException(401, "A write needs the service's key in the X-API-Key header; the key was missing or wrong.")

    # -- reading ------------------------------------------------------------------------------
    @app.get("/health", response_model=HealthResponse, tags=["service"])
    def health() -> HealthResponse:
        """Liveness: the collection served and whether writes and feedback are on."""
        return HealthResponse(status="ok", collection=r.config.collection, version=__version__,
                              writes=settings.allow_writes, feedback=settings.feedback and hasattr(r, "feedback"))

    @app.get("/stats", tags=["service"], responses=_ERRORS)
    def stats(probe: bool = Query(False, description="Also run the recall probe (up to 50 hybrid searches).")) -> dict[str, Any]:
        """Counts, docid balance, staleness of the build and artifact sizes (``MultimodalRetriever.stats``)."""
        return dict(_jsonable(r.stats(probe=probe).as_dict()))

    @app.post(
        "/search",
        response_model=SearchResponse,
        tags=["search"],
        responses={**_ERRORS, 409: {"model": ErrorBody, "description": "The mode needs a build (NotBuiltError)."}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {"schema": _multipart_search_schema()},
        }}},
    )
    async def search(request: Request) -> JSONResponse:
        """Search by text, boolean query, vector (JSON body) or an uploaded image (multipart ``image`` plus the same fields)."""
        ctype = request.headers.get("content-type", "")
        upload: tuple[bytes, str | None] | None = None
        if ctype.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=16) as form:
                fields = {k: v for k, v in form.items() if isinstance(v, str)}
                file = form.get("image")
                if file is not None and not isinstance(file, str):
                    upload = (await _read_limited(file, settings.max_upload_bytes), file.filename)
                req = _form_search_request(fields)
        else:
            try:
                req = SearchRequest.model_validate(await _json_body(request))
            except ValidationError as exc:
                return _error(422, "ValidationError", _validation_message(exc.errors()))
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(run_search, req, upload)

    def run_search(req: SearchRequest, upload: tuple[bytes, str | None] | None) -> JSONResponse:
        image = decode_upload(upload[0], upload[1], settings) if upload is not None else None  # decoding is CPU work: off the event loop
        given = [x for x in ("text", "query", "vector") if getattr(req, x) is not None] + (["image"] if image is not None else [])
        if len(given) != 1:
            raise InputError(f"Give exactly one of text, query, vector or an image file to search; got {', '.join(given) or 'none'}.")
        check_k(req.k)
        check_text(req.text, "text query")
        check_text(req.query, "boolean query")
        t0 = time.perf_counter()
        summary: dict[str, Any] | None = None
        if req.query is not None:
            from ..setops import Q

            expr = Q.parse(req.query)
            hits = r.search(expr, k=req.k, modality=req.modality, where=req.where, explain=req.explain)
            kind = "boolean"
            if req.explain:
                summary = {"mode": "boolean", **_jsonable(r.compile(expr, allow_negative_only=True).explain())}
                hits = [_without_query_explain(h) for h in hits]
        else:
            vector = np.asarray(req.vector, dtype=np.float32) if req.vector is not None else None
            hits = r.search(req.text, image=image, vector=vector, k=req.k, modality=req.modality, mode=req.mode,
                            where=req.where, explain=req.explain)
            kind = "text" if req.text is not None else ("image" if image is not None else "vector")
            if req.explain:
                summary = _explain_summary(hits, r.count())
        took = (time.perf_counter() - t0) * 1000
        # Returned as a response, so FastAPI does not validate it again (the hot path); the shape is SearchResponse's.
        body = {"hits": [hit_dict(h) for h in hits], "kind": kind, "took_ms": round(took, 3), "explain": summary}
        return JSONResponse(body)

    @app.get("/items/{id}", response_model=HitModel, tags=["items"], responses=_ERRORS)
    def get_item(id: str) -> HitModel:
        """One document by id."""
        return hit_model(r.get([_parse_id(id)])[0])

    @app.get("/items/{id}/thumbnail", tags=["items"], responses={**_ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response)
    def thumbnail(id: str) -> Response:
        """A JPEG thumbnail of an image document, made only from the file the index holds for it."""
        pid = _parse_id(id)
        h = r.get([pid])[0]
        if h.modality not in ("image", "video"):
            raise NotFoundError(f"Document {pid!r} is a {h.modality} document; only image and video documents have thumbnails.")
        data = thumbs.get(pid, h.uri, h.t if h.modality == "video" else None)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=300"})

    @app.get("/items/{id}/media", tags=["items"], responses={**_ERRORS, 200: {"content": {"video/*": {}}}}, response_class=FileResponse)
    def media(id: str) -> FileResponse:
        """The video file of a video moment, as the index holds it (range requests work, so a player can seek to ``#t=``)."""
        pid = _parse_id(id)
        h = r.get([pid])[0]
        if h.modality != "video" or not h.uri:
            raise NotFoundError(f"Document {pid!r} is a {h.modality} document; only video moments have a media file to play.")
        path = Path(h.uri)
        if not path.is_file():
            raise NotFoundError(f"The video file of document {pid!r} is gone from {h.uri!r}; restore it or re-add the video.")
        return FileResponse(str(path), media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/items/{id}/related", response_model=RelatedResponse, tags=["items"], responses=_ERRORS)
    def related(id: str, k: int = Query(10, description="Hits to return."),
                modality: str | None = Query(None, description="'image' or 'text'.")) -> RelatedResponse:
        """Linked documents first, then nearest neighbours (``MultimodalRetriever.related``)."""
        hits = r.related(_parse_id(id), modality=modality or None, k=check_k(k))
        return RelatedResponse(hits=[hit_model(h, relation=True) for h in hits])

    @app.get("/browse", response_model=BrowseResponse, tags=["browse"],
             responses={**_ERRORS, 409: {"model": ErrorBody, "description": "The index has no build yet (NotBuiltError)."}})
    def browse(prefix: str = Query("", description="A docid prefix, dot-separated ('' for the root: the modalities)."),
               offset: int = Query(0, ge=0), limit: int | None = Query(None, ge=1)) -> BrowseResponse:
        """The children of a docid prefix, with document counts and sample documents each."""
        from ..setops import Q

        codes = _parse_prefix(prefix)
        children = r.browse(codes)
        lim = min(limit or settings.browse_limit, settings.browse_limit)
        nodes = []
        for child, count in children[offset:offset + lim]:
            samples = r.search(Q.prefix(child), k=settings.browse_samples) if settings.browse_samples else []
            label = CODE_MODALITIES.get(child[0]) if len(child) == 1 else None
            leaf = (len(samples[0].docid) == len(child)) if samples else None
            nodes.append(BrowseNode(prefix=prefix_key(child), codes=list(child), count=count, label=label, leaf=leaf,
                                    samples=[hit_model(h, explain=False) for h in samples]))
        return BrowseResponse(prefix=prefix_key(codes), codes=list(codes), total=len(children), offset=offset, limit=lim, children=nodes)

    @app.post("/feedback", response_model=FeedbackResponse, tags=["feedback"],
              responses={**_ERRORS, 501: {"model": ErrorBody, "description": "This library version has no feedback API."}})
    def feedback(req: FeedbackRequest) -> FeedbackResponse | JSONResponse:
        """Mark a hit relevant or irrelevant for a query; the index learns from it (``MultimodalRetriever.feedback``)."""
        if not settings.feedback:
            return _error(403, "Forbidden", "Feedback is off on this service; start it without --no-feedback to accept it.")
        fn = getattr(r, "feedback", None)
        if fn is None:
            return _error(501, "NotImplemented", "This mmgr-qdrant version has no feedback API; upgrade the library to store relevance marks.")
        if (req.query is None) == (req.vector is None):
            raise InputError("Give exactly one of query (the text searched) or vector with the feedback.")
        check_text(req.query, "query")
        vector = np.asarray(req.vector, dtype=np.float32) if req.vector is not None else None
        pid = normalize_id(req.id)
        if vector is not None:
            fn(id=pid, vector=vector, relevant=req.relevant)
        else:
            fn(req.query, pid, relevant=req.relevant)
        return FeedbackResponse(stored=True)

    # -- clip-retrieval's API shape, so its front end can query this service ------------------------
    @app.get("/indices-list", tags=["clip-retrieval"])
    def indices_list() -> list[str]:
        """The collection served, as clip-retrieval's ``/indices-list``."""
        return [r.config.collection]

    @app.post("/knn-service", tags=["clip-retrieval"], responses=_ERRORS)
    def knn_service(req: KnnRequest, request: Request) -> list[dict[str, Any]]:
        """clip-retrieval's ``/knn-service``: ``[{id, similarity, caption, url}]`` (``url`` is the thumbnail's address)."""
        if req.indice_name is not None and req.indice_name != r.config.collection:
            raise NotFoundError(f"Index {req.indice_name!r} is not served here; use {r.config.collection!r} (see /indices-list).")
        if req.image_url is not None:
            raise InputError("This service does not fetch image URLs; send the image itself, base64-encoded, in 'image'.")
        check_text(req.text, "text query")
        image = None
        if req.image is not None:
            import base64
            import binascii

            try:
                data = base64.b64decode(req.image.split(",", 1)[-1], validate=True)  # a data: URL or bare base64
            except (binascii.Error, ValueError):
                raise InputError("The 'image' field is not base64; send the image's bytes base64-encoded.") from None
            if len(data) > settings.max_upload_bytes:
                raise InputError(f"The image is over this service's limit of {settings.max_upload_bytes:,} bytes; send a smaller one.")
            image = decode_upload(data, "image", settings)
        vector = np.asarray(req.embedding_input, dtype=np.float32) if req.embedding_input is not None else None
        hits = r.search(req.text, image=image, vector=vector, k=check_k(req.num_images), modality=req.modality)
        base = str(request.base_url).rstrip("/")
        return [{"id": h.id, "similarity": float(h.score), "caption": h.text,
                 "url": f"{base}/items/{h.id}/thumbnail" if h.uri and h.modality == "image" else None} for h in hits]

    # -- writes (--allow-writes and the key) ----------------------------------------------------
    @app.post("/items", response_model=AddResponse, tags=["writes"], dependencies=[Depends(require_writes)],
              responses={**_ERRORS, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 413: {"model": ErrorBody}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": AddTextsRequest.model_json_schema()},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                      "captions": {"type": "array", "items": {"type": "string"}}}}},
              }}})
    async def add_items(request: Request) -> AddResponse:
        """Add texts (JSON ``{"texts": [...]}``) or image files (multipart ``files``, optional ``captions``); all or nothing."""
        from starlette.concurrency import run_in_threadpool

        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_files=settings.max_items, max_fields=settings.max_items + 4) as form:
                uploads = [u for u in form.getlist("files") if not isinstance(u, str)]
                captions = [c if isinstance(c, str) and c.strip() else None for c in form.getlist("captions")]
                if not uploads:
                    raise InputError("No files were sent; post image files in the multipart field 'files'.")
                if captions and len(captions) != len(uploads):
                    raise InputError(f"Got {len(captions)} captions for {len(uploads)} files; send one caption (or an empty one) per file.")
                data = [(await _read_limited(u, settings.max_upload_bytes), u.filename) for u in uploads]

            def add() -> Any:  # every file is decoded and checked before anything is written
                images = [decode_upload(b, name, settings) for b, name in data]
                return r.add_images(images, captions=captions or None)

            result = await run_in_threadpool(add)
        else:
            try:
                req = AddTextsRequest.model_validate(await _json_body(request))
            except ValidationError as exc:
                return _error(422, "ValidationError", _validation_message(exc.errors()))  # type: ignore[return-value]
            if not 1 <= len(req.texts) <= settings.max_items:
                raise InputError(f"Got {len(req.texts)} texts; send 1 to {settings.max_items} at once.")
            for t in req.texts:
                check_text(t, "text")
            result = await run_in_threadpool(lambda: r.add_texts(req.texts, payloads=req.payloads))
        logger.info("added %d documents over HTTP", len(result))
        return AddResponse(ids=list(result), skipped=[vars(s) for s in result.skipped])

    @app.delete("/items/{id}", response_model=DeleteResponse, tags=["writes"], dependencies=[Depends(require_writes)],
                responses={**_ERRORS, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}})
    def delete_item(id: str) -> DeleteResponse:
        """Delete one document (its links from other documents go too)."""
        pid = _parse_id(id)
        r.delete([pid])
        logger.info("deleted %r over HTTP", pid)
        return DeleteResponse(deleted=pid)

    # -- the page -----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


# -- request parsing ---------------------------------------------------------------------------
def _parse_id(raw: str) -> PointId:
    s = raw.strip()
    return normalize_id(int(s) if s.isdigit() else s)


def _parse_prefix(raw: str) -> tuple[int, ...]:
    s = raw.strip()
    if not s:
        return ()
    parts = s.split(".")
    if not all(p.isdigit() for p in parts):
        raise InputError(f"Docid prefix {raw!r} is not dot-separated integer codes; write it like '1.12'.")
    return tuple(int(p) for p in parts)


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise InputError("The request body is empty; send a JSON object (Content-Type: application/json) or a multipart form.")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise InputError(f"The request body is not valid JSON ({exc.msg} at position {exc.pos}); send a JSON object.") from None
    except ValueError:  # bytes that are not UTF-8
        raise InputError("The request body is not UTF-8 text; send a JSON object encoded as UTF-8.") from None


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"Upload {upload.filename!r} is over this service's limit of {limit:,} bytes; send a smaller image.")
    return data


def decode_upload(data: bytes, name: str | None, settings: ServiceSettings) -> Image.Image:
    """An uploaded image as RGB, its pixel count checked from the header before it is decoded.

    Raises:
        InputError: the bytes are empty, not an image, or have more pixels than ``settings.max_pixels``.
    """
    label = repr(name or "upload")
    if not data:
        raise InputError(f"Upload {label} is empty; send the bytes of a PNG, JPEG or other image.")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        w = h = 0  # load_image below gives the library's message for what it cannot read
    if w * h > settings.max_pixels:
        raise InputError(f"Upload {label} has {w}x{h} = {w * h:,} pixels, over this service's limit of {settings.max_pixels:,}; downscale it.")
    return load_image(data)


def _form_search_request(fields: dict[str, str]) -> SearchRequest:
    data: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("text", "query", "mode", "modality") and value.strip():
            data[key] = value
        elif key == "k":
            if not value.strip().isdigit():
                raise InputError(f"k={value!r} is not a positive integer; ask for at least one hit.")
            data["k"] = int(value)
        elif key == "explain":
            data["explain"] = value.strip().lower() in ("1", "true", "yes", "on")
        elif key == "where" and value.strip():
            try:
                data["where"] = json.loads(value)
            except ValueError:
                raise InputError(f"where={value!r} is not JSON; send an object like {{\"brand\": \"acme\"}}.") from None
        elif key not in ("text", "query", "mode", "modality", "where"):
            raise InputError(f"Form field {key!r} is not known; use image, k, mode, modality, where or explain.")
    try:
        return SearchRequest.model_validate(data)
    except ValidationError as exc:
        raise InputError(_validation_message(exc.errors())) from None


def _multipart_search_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "image": {"type": "string", "format": "binary"}, "k": {"type": "integer", "default": 10},
        "mode": {"type": "string", "enum": ["hybrid", "generative", "dense"]}, "modality": {"type": "string", "enum": ["image", "text", "video"]},
        "where": {"type": "string", "description": "JSON object of payload conditions."}, "explain": {"type": "boolean"},
    }, "required": ["image"]}


# -- response shaping -------------------------------------------------------------------------
def _validation_message(errors: Any) -> str:
    parts = []
    for e in list(errors)[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "The request is invalid (" + "; ".join(parts) + "); fix those fields (see /docs)."


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return "HTTPError"


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, tuples and sets to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _without_query_explain(h: Hit) -> Hit:
    """A boolean hit's explain without the compiled query (it is the same for every hit; it goes in the summary)."""
    from dataclasses import replace

    info = {k: v for k, v in (h.explain or {}).items() if k != "query"} or None
    return replace(h, explain=info)


def _explain_summary(hits: list[Hit], total: int) -> dict[str, Any]:
    """What the explain panel shows: the mode, the prefixes admitted, the filter fraction, score parts per hit."""
    first = next((h.explain for h in hits if h.explain and h.explain.get("mode") == "hybrid"), None)
    modes = sorted({str((h.explain or {}).get("mode")) for h in hits})
    summary: dict[str, Any] = {"mode": (first or {}).get("mode") or (modes[0] if len(modes) == 1 else ", ".join(modes)), "documents": total}
    if first is not None:
        admitted = int(first.get("admitted", 0))
        summary.update(prefixes=[prefix_key(p) for p in first.get("beam", [])], admitted=admitted,
                       filter_fraction=round(admitted / total, 6) if total else None, stopped=first.get("stopped"))
    summary["scores"] = [{"ref": str(h.id), "score": float(h.score), "vector": _num((h.explain or {}).get("vector_score")),
                          "prefix_prob": _num((h.explain or {}).get("prefix_prob")), "mode": (h.explain or {}).get("mode")} for h in hits]
    return _jsonable(summary)  # type: ignore[no-any-return]


def _num(x: Any) -> float | None:
    return None if x is None else float(x)

