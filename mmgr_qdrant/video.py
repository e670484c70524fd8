"""Video documents: frame sampling with PyAV, ingest of moments, grouping of hits by video.

A video is one logical document with many *moments*: each kept frame is a point of modality
``"video"`` whose library payload carries the video's id (``_mmgr.video``), the frame's
timestamp in seconds (``_mmgr.t``) and the file it came from (``_mmgr.uri``). Frames are kept at
a fixed interval (``every_s``) or at scene cuts (``scenes=True``); decoding streams, so a long
video holds one batch of frames in memory at a time.

The functions here take the parts they need as explicit arguments (an ingest callable, a store,
a search callable); the retriever's ``add_videos``, ``search(group_by="video")`` and ``delete``
delegate to them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .errors import InputError, MMGRError, missing_dependency
from .filters import Filter, Match
from .ids import content_id
from .payload import LibraryFields, check_user_payload, read_link
from .progress import ProgressCallback, null_progress
from .types import F_VIDEO, AddResult, Hit, PointId, Skipped, normalize_id

if TYPE_CHECKING:
    from .store import Store

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov")
"""File suffixes the CLI ingests as videos."""

"""Payload path of a moment's video id (a keyword string)."""

DEFAULT_SCENE_THRESHOLD = 0.1
"""Mean absolute difference (0..1) of two consecutive 32x32 grey thumbnails that can count as a cut."""

_CUT_RATIO = 4.0  # ... and only when it is this many times the recent frame-to-frame change (a pan is not a cut)
_RECENT = 10

_THUMB = 32
_MAX_SIDE = 640  # kept frames are downscaled to this longest side: the encoder never needs more


@dataclass(frozen=True)
class Frame:
    """One kept frame of a video.

    Attributes:
        t: its timestamp in seconds from the start of the stream.
        image: the decoded RGB picture (downscaled to at most 640 px on the longest side).
        index: its position among the kept frames (0, 1, 2, ...).
    """

    t: float
    image: Image.Image
    index: int


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise missing_dependency("av", "video") from exc
    return av


def check_sampling(every_s: Any, scene_threshold: Any = DEFAULT_SCENE_THRESHOLD) -> tuple[float, float]:
    """Validated ``(every_s, scene_threshold)``.

    Raises:
        InputError: ``every_s`` is not a positive number or ``scene_threshold`` is outside (0, 1).
    """
    if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not np.isfinite(every_s) or every_s <= 0:
        raise InputError(f"every_s={every_s!r} is not a positive number of seconds; use e.g. every_s=1.0.")
    if isinstance(scene_threshold, bool) or not isinstance(scene_threshold, (int, float)) or not 0 < scene_threshold < 1:
        raise InputError(f"scene_threshold={scene_threshold!r} is outside (0, 1); use e.g. {DEFAULT_SCENE_THRESHOLD}.")
    return float(every_s), float(scene_threshold)


def sample_frames(
    source: str | os.PathLike[str],
    *,
    every_s: float = 1.0,
    scenes: bool = False,
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
    progress: ProgressCallback | None = None,
) -> Iterator[Frame]:
    """Stream the kept frames of a video file, decoding one frame at a time.

    With ``scenes=False`` a frame is kept every ``every_s`` seconds (the first frame at or after
    0, every_s, 2*every_s, ...). With ``scenes=True`` the first frame and the first frame of each
    scene are kept (a cut: the mean absolute difference of consecutive 32x32 grey thumbnails
    exceeds ``scene_threshold`` and is at least 4 times the mean change of the previous 10 frames,
    so steady motion such as a pan is not taken for cuts); a scene longer than ``10 * every_s`` also gets a frame every
    ``10 * every_s`` seconds, so a static hour-long shot is not a single moment.

    Args:
        source: the video file.
        every_s: the sampling interval in seconds.
        scenes: keep frames at scene cuts instead of at a fixed interval.
        scene_threshold: the thumbnail difference (0..1) that counts as a cut.
        progress: called as ``("decode", seconds decoded, duration or None, {"kept": n})``.

    Yields:
        :class:`Frame` objects in time order.

    Raises:
        InputError: the file is missing, is not a video, has no video stream, or is corrupt.
        MissingDependencyError: PyAV is not installed (``pip install 'mmgr-qdrant[video]'``).
    """
    every_s, scene_threshold = check_sampling(every_s, scene_threshold)
    av = _av()
    path = Path(source)
    if not path.is_file():
        raise InputError(f"Video file {str(path)!r} does not exist; check the path.")
    report = progress or null_progress
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"Video {str(path)!r} cannot be opened ({_reason(exc)}); check that it is an .mp4, .webm, .mkv or .mov file.") from None
    kept = 0
    try:
        if not container.streams.video:
            raise InputError(f"File {str(path)!r} has no video stream; give a video file.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        if duration is None and container.duration:
            duration = container.duration / 1_000_000
        next_t = 0.0
        last_kept_t = -np.inf
        prev: np.ndarray | None = None
        recent: deque[float] = deque(maxlen=_RECENT)
        long_scene = every_s * 10
        try:
            for frame in container.decode(stream):
                t = _frame_time(frame, stream)
                if scenes:
                    thumb = frame.to_ndarray(format="gray", width=_THUMB, height=_THUMB).astype(np.float32) / 255.0
                    if prev is None:
                        cut = True
                    else:
                        diff = float(np.abs(thumb - prev).mean())
                        base = float(np.mean(recent)) if recent else 0.0
                        cut = diff > scene_threshold and diff >= _CUT_RATIO * base
                        recent.append(diff)
                    prev = thumb
                    keep = cut or t - last_kept_t >= long_scene
                else:
                    keep = t + 1e-6 >= next_t
                    if keep:  # the next sampling point after this frame (skips gaps without a burst of frames)
                        next_t = (np.floor((t + 1e-6) / every_s) + 1) * every_s
                if keep:
                    last_kept_t = t
                    kept += 1
                    report("decode", int(t), int(duration) if duration else None, {"kept": float(kept)})
                    yield Frame(t=round(t, 3), image=_to_image(frame), index=kept - 1)
        except av.FFmpegError as exc:
            raise InputError(f"Video {str(path)!r} is corrupt after {kept} kept frames ({_reason(exc)}); re-encode or drop it.") from None
    finally:
        container.close()
    if kept == 0:
        raise InputError(f"Video {str(path)!r} has no decodable frames; re-encode or drop it.")


def frame_at(source: str | os.PathLike[str], t: float) -> Image.Image:
    """The frame shown at ``t`` seconds (the last frame starting at or before ``t``).

    Raises:
        InputError: the file cannot be decoded or has no frame.
        MissingDependencyError: PyAV is not installed.
    """
    av = _av()
    try:
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            if t > 0 and stream.time_base:
                container.seek(int(t / float(stream.time_base)), stream=stream, backward=True)
            best: Any = None
            for frame in container.decode(stream):
                if best is not None and _frame_time(frame, stream) > t + 1e-6:
                    break
                best = frame
            if best is None:
                raise InputError(f"Video {str(source)!r} has no frame at {t:.2f} s; check the timestamp.")
            return _to_image(best)
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise InputError(f"Video {str(source)!r} cannot be decoded at {t:.2f} s ({_reason(exc)}); check the file.") from None


def _frame_time(frame: Any, stream: Any) -> float:
    if frame.pts is not None and stream.time_base is not None:
        return float(frame.pts * stream.time_base)
    return float(frame.time or 0.0)


def _to_image(frame: Any) -> Image.Image:
    w, h = frame.width, frame.height
    scale = min(1.0, _MAX_SIDE / max(w, h, 1))
    if scale < 1.0:
        return frame.to_image(width=max(1, round(w * scale)), height=max(1, round(h * scale)))
    return frame.to_image()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:160]


def video_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def video_key(video_id: PointId) -> str:
    """The keyword a video id is stored and matched as (``_mmgr.video``)."""
    return str(video_id)


def parse_video_key(key: Any) -> PointId | None:
    """A stored ``_mmgr.video`` keyword back as a point id (int or UUID string)."""
    return None if key is None else read_link(str(key))


# -- ingest ------------------------------------------------------------------------------------

IngestFn = Callable[..., AddResult]
"""The retriever's generic ingest: ``(items, prepare, embed, payloads, ids, on_error, batch_size, progress)``."""


def add_videos(
    paths: Sequence[str | os.PathLike[str]],
    *,
    ingest: IngestFn,
    encode_images: Callable[[list[Image.Image]], np.ndarray],
    store: Store,
    delete_points: Callable[[list[PointId]], object],
    every_s: float = 1.0,
    scenes: bool = False,
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
    captions: Sequence[str | None] | None = None,
    payloads: Sequence[dict[str, Any] | None] | None = None,
    ids: Sequence[PointId] | None = None,
    on_error: str = "raise",
    batch_size: int = 32,
    progress: ProgressCallback | None = None,
) -> AddResult:
    """Sample, embed and store the moments of each video; one logical id per video.

    Each video is decoded as a stream and stored ``batch_size`` frames at a time through
    ``ingest`` (the retriever's own ingest path, so docids are assigned once the index is built).
    A video that fails part-way has the moments already written for it removed again, so a skipped
    video leaves nothing behind, and with ``on_error="raise"`` a failed call removes the new moments
    of every video it added. Re-adding a video replaces its moments (those of the old sampling that
    the new one does not produce are deleted once the whole call has succeeded).

    Args:
        paths: video files.
        ingest: the retriever's generic ingest callable.
        encode_images: the encoder's image embedding function.
        store: the store (to find a video's previous moments).
        delete_points: deletes point ids (the retriever's ``delete``).
        every_s / scenes / scene_threshold: the sampling, as in :func:`sample_frames`.
        captions: one caption (or ``None``) per video, stored on each of its moments.
        payloads: one user payload (or ``None``) per video, copied to each of its moments.
        ids: one id per video (unsigned int or UUID string); derived from the file's bytes if left out.
        on_error: ``"raise"`` (stop at the first bad video; nothing new of the call stays stored) or
            ``"skip"`` (bad videos are listed in ``result.skipped`` with the reason).
        batch_size: frames per encoder batch and per upsert.
        progress: called as ``("video", videos done, videos, {})`` and per decoded batch.

    Returns:
        The video ids stored, in input order (an :class:`AddResult` with ``.skipped``).

    Raises:
        InputError: a video is missing, corrupt or has no frames, or an argument is invalid (``on_error="raise"``).
        MissingDependencyError: PyAV is not installed.
    """
    if isinstance(paths, (str, bytes, os.PathLike)) or not isinstance(paths, Sequence):
        raise InputError("paths must be a list of video files; wrap a single path in a list.")
    items = list(paths)
    n = len(items)
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error={on_error!r} is not known; use 'raise' or 'skip'.")
    for name, seq in (("captions", captions), ("payloads", payloads), ("ids", ids)):
        if seq is not None and len(seq) != n:
            raise InputError(f"Got {len(seq)} {name} for {n} videos; give one per video.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} is not a positive int; use e.g. 32.")
    check_sampling(every_s, scene_threshold)
    _av()
    user = [check_user_payload(payloads[i] if payloads is not None else None, i) for i in range(n)]
    vids = [normalize_id(ids[i]) for i in range(n)] if ids is not None else None
    for i, c in enumerate(captions or []):
        if c is not None and (not isinstance(c, str) or not c.strip()):
            raise InputError(f"Caption #{i} {c!r} is empty or not a string; give text or None.")
    report = progress or null_progress
    result = AddResult()
    added: list[PointId] = []  # moments new to the collection, across the videos of this call
    stale: list[PointId] = []  # moments of an earlier sampling, deleted once the whole call succeeded
    for i, item in enumerate(items):
        path = str(item)
        try:
            vid = vids[i] if vids is not None else content_id("video", _digest_or_raise(path))
            new, old = _add_one(path, vid, ingest=ingest, encode_images=encode_images, store=store, delete_points=delete_points,
                                every_s=every_s, scenes=scenes, scene_threshold=scene_threshold,
                                caption=captions[i] if captions is not None else None, payload=user[i], batch_size=batch_size,
                                progress=progress)
        except MMGRError as exc:
            if on_error == "raise" or not isinstance(exc, InputError):
                if added:  # a failed call writes nothing: the earlier videos' new moments go too
                    delete_points(added)
                raise
            logger.warning("skipped video %s: %s", path, exc)
            result.skipped.append(Skipped(i, path, str(exc)))
            report("video", i + 1, n, {})
            continue
        added.extend(new)
        stale.extend(old)
        result.append(vid)
        report("video", i + 1, n, {})
    if stale:
        delete_points(stale)
    return result


def _digest_or_raise(path: str) -> str:
    try:
        return video_digest(path)
    except OSError:
        raise InputError(f"Video file {path!r} cannot be read; check the path.") from None


def _add_one(
    path: str,
    vid: PointId,
    *,
    ingest: IngestFn,
    encode_images: Callable[[list[Image.Image]], np.ndarray],
    store: Store,
    delete_points: Callable[[list[PointId]], object],
    every_s: float,
    scenes: bool,
    scene_threshold: float,
    caption: str | None,
    payload: dict[str, Any],
    batch_size: int,
    progress: ProgressCallback | None,
) -> tuple[list[PointId], list[PointId]]:
    """Store one video's moments; ``(moments new to the collection, moments of an earlier sampling)``."""
    key = video_key(vid)
    before = set(moment_ids(store, [vid]).get(vid, []))
    written: list[PointId] = []
    uri = str(Path(path).resolve())

    def prepare(_: int, frame: Frame) -> tuple[Any, LibraryFields]:
        pid = content_id("video", f"{key}@{frame.t:.3f}")
        return (pid, frame.image), LibraryFields(modality="video", uri=uri, video=key, t=frame.t, caption=caption)

    def flush(batch: list[Frame]) -> None:
        stored = ingest(batch, prepare, encode_images, [payload] * len(batch), None, "raise", batch_size, None)
        written.extend(stored)

    try:
        batch: list[Frame] = []
        for frame in sample_frames(path, every_s=every_s, scenes=scenes, scene_threshold=scene_threshold, progress=progress):
            batch.append(frame)
            if len(batch) == batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    except BaseException:
        new = [p for p in dict.fromkeys(written) if p not in before]
        if new:  # a failed video leaves nothing new behind
            delete_points(new)
        raise
    logger.info("added video %s: %d moments", path, len(set(written)))
    kept = set(written)
    return [p for p in dict.fromkeys(written) if p not in before], sorted(before - kept, key=str)


def moment_ids(store: Store, video_ids: Sequence[PointId]) -> dict[PointId, list[PointId]]:
    """The point ids of each video's moments (videos without moments are left out)."""
    if not video_ids:
        return {}
    keys = {video_key(v): v for v in video_ids}
    flt = Filter(must=(Match(F_VIDEO, tuple(keys)),))
    out: dict[PointId, list[PointId]] = {}
    for rows in store.scroll(flt, batch_size=1024):
        for r in rows:
            key = LibraryFields.of(r.payload).video
            out.setdefault(keys[str(key)], []).append(r.id)
    return out


def expand_video_ids(store: Store, ids: Sequence[PointId]) -> list[PointId]:
    """``ids`` with each id that is not a point but a video replaced by the ids of its moments.

    Ids that are neither are kept, so the caller reports them as missing.
    """
    present = {r.id for r in store.retrieve(list(ids))}
    absent = [i for i in ids if i not in present]
    videos = moment_ids(store, absent) if absent else {}
    out: list[PointId] = []
    for i in ids:
        out.extend(videos.get(i, [i]) if i not in present else [i])
    return list(dict.fromkeys(out))


# -- grouping ----------------------------------------------------------------------------------

def group_by_video(search: Callable[[int], list[Hit]], k: int, moments: int = 3, max_pool: int = 4096) -> list[Hit]:
    """One hit per video (documents that are not video moments stay single hits), best first.

    The rule, the same on every backend: ask ``search`` for a pool of moments, group them by
    ``Hit.video``, score a group by its best moment, keep each group's ``moments`` best moments
    (by score), and widen the pool (doubling, up to ``max_pool``) until ``k`` groups are found or
    the collection has no more hits.

    Args:
        search: returns up to ``limit`` hits, best first.
        k: groups to return.
        moments: moments kept per video (``Hit.moments``).
        max_pool: the largest pool asked for.

    Returns:
        Up to ``k`` hits. A video's hit has ``id`` and ``video`` set to the video id, the best
        moment's ``score``, ``docid``, ``uri``, ``t`` and payload, and ``moments`` (its best moments,
        each a moment hit with its own point id and timestamp).

    Raises:
        InputError: ``moments`` is not a positive int.
    """
    if isinstance(moments, bool) or not isinstance(moments, int) or moments < 1:
        raise InputError(f"moments={moments!r} is not a positive int; ask for at least one moment per video.")
    pool = min(max(4 * k * moments, 64), max_pool)
    while True:
        hits = search(pool)
        groups: dict[Any, list[Hit]] = {}
        for h in hits:
            groups.setdefault(("v", h.video) if h.video is not None else ("d", h.id), []).append(h)
        if len(groups) >= k or len(hits) < pool or pool >= max_pool:
            break
        pool = min(pool * 2, max_pool)
    out: list[Hit] = []
    for (kind, _), members in groups.items():
        members.sort(key=lambda h: -h.score)
        best = members[0]
        if kind == "d":
            out.append(best)
            continue
        out.append(replace(best, id=best.video, moments=tuple(members[:moments])))  # type: ignore[arg-type]
    out.sort(key=lambda h: -h.score)
    return out[:k]


def check_group_by(group_by: Any) -> None:
    """Raises InputError unless ``group_by`` is ``"video"`` (the one grouping there is)."""
    if group_by != "video":
        raise InputError(f"group_by={group_by!r} is not known; use group_by='video' (or leave it out).")
