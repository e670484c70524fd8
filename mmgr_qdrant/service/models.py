"""The JSON shapes of the API (pydantic models; OpenAPI at ``/docs`` is generated from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PointIdJSON = int | str


class ErrorBody(BaseModel):
    """Every error: the library's error class (or an HTTP reason) and its one-sentence message."""

    error: str = Field(description="The error class, e.g. InputError, NotFoundError, QuerySyntaxError.")
    message: str = Field(description="What happened, what was given and how to fix it.")


class SearchRequest(BaseModel):
    """A search by exactly one of: ``text``, ``query`` (boolean syntax), ``vector`` (or an uploaded image, as multipart)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description="Plain text, never parsed as boolean syntax.", examples=["a red car"])
    query: str | None = Field(None, description="Boolean syntax: 'cat AND NOT (dog OR wolf)', 'modality:image', 'brand=acme'.")
    vector: list[float] | None = Field(None, description="A query embedding of the index's dimension.")
    k: int = Field(10, description="Hits to return (1 to the service's max_k).")
    mode: Literal["hybrid", "generative", "dense"] | None = Field(None, description="Search mode; hybrid once built, dense before.")
    modality: Literal["image", "text", "video"] | None = Field(None, description="Only documents of this modality.")
    where: dict[str, Any] | None = Field(None, description="Payload conditions: {'field': value} or {'field': [v1, v2]}.")
    explain: bool = Field(False, description="Attach per-stage figures to each hit and an explain summary.")


class HitModel(BaseModel):
    """One document or search result."""

    id: PointIdJSON = Field(description="The point id (an unsigned integer or a UUID string).")
    ref: str = Field(description="The id as a string, for URLs (integers above 2**53 lose precision in JavaScript).")
    score: float
    docid: list[int] = Field(description="The semantic docid (empty before the index is built).")
    docid_str: str = Field(description="The docid as dot-separated codes, as /browse?prefix= takes it.")
    modality: str
    payload: dict[str, Any]
    text: str | None = Field(None, description="A text document's text, or an image's caption.")
    file: str | None = Field(None, description="The file name (not the path) of an image added from a file.")
    thumbnail: str | None = Field(None, description="URL of the thumbnail, when the document is an image or video file the index holds.")
    t: float | None = Field(None, description="A video moment's time in seconds from the video's start.")
    video: str | None = Field(None, description="A video moment's video id, as a string.")
    media: str | None = Field(None, description="URL that plays a video moment's file from its time (``.../media#t=12.5``).")
    relation: str | None = Field(None, description="For /related: 'linked' or 'nearest'.")
    explain: dict[str, Any] | None = None


class SearchResponse(BaseModel):
    hits: list[HitModel]
    kind: Literal["text", "boolean", "image", "vector"]
    took_ms: float
    explain: dict[str, Any] | None = Field(None, description="Prefixes admitted, filter fraction, score parts (with explain=true).")


class RelatedResponse(BaseModel):
    hits: list[HitModel]


class BrowseNode(BaseModel):
    prefix: str = Field(description="The child's docid prefix, dot-separated.")
    codes: list[int]
    count: int = Field(description="Documents under this prefix.")
    label: str | None = Field(None, description="A name for the node where the code has one (the modality at the root).")
    leaf: bool | None = Field(None, description="Whether the prefix is a whole docid (one document).")
    samples: list[HitModel]


class BrowseResponse(BaseModel):
    prefix: str
    codes: list[int]
    total: int = Field(description="Children of the prefix (before paging).")
    offset: int
    limit: int
    children: list[BrowseNode]


class FeedbackRequest(BaseModel):
    """A relevance mark on a hit for a query."""

    model_config = ConfigDict(extra="forbid")

    id: PointIdJSON = Field(description="The hit's id.")
    query: str | None = Field(None, description="The text query the hit was found for.")
    vector: list[float] | None = Field(None, description="Or the query embedding.")
    relevant: bool = True


class FeedbackResponse(BaseModel):
    stored: bool


class AddTextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str]
    payloads: list[dict[str, Any] | None] | None = None


class AddResponse(BaseModel):
    ids: list[PointIdJSON]
    skipped: list[dict[str, Any]] = Field(default_factory=list)


class DeleteResponse(BaseModel):
    deleted: PointIdJSON


class HealthResponse(BaseModel):
    status: Literal["ok"]
    collection: str
    version: str
    writes: bool
    feedback: bool


class KnnRequest(BaseModel):
    """clip-retrieval's ``/knn-service`` request (its front end can query this service); unknown options are ignored."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    image: str | None = Field(None, description="A base64-encoded image.")
    image_url: str | None = Field(None, description="Not fetched by this service; send the image as base64 instead.")
    embedding_input: list[float] | None = None
    modality: Literal["image", "text"] = Field("image", description="Search the image or the text documents.")
    num_images: int = Field(40, description="Results to return.")
    indice_name: str | None = Field(None, description="The collection served (others are not found).")
