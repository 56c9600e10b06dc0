"""The captions of a video library, tokenized once: what search ranks and scores against.

A video's captions are Marlin's caption answer (the Scene paragraph and the time-ranged events, times
in seconds from the start of the video) or any text a user imported in the same shape. The index is
built once per search and holds the library's term statistics (:class:`~.text_relevance.LibraryTerms`,
one document per video: scene + events).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .text_relevance import LibraryTerms, tokenize

__all__ = ["CaptionIndex", "CaptionedEvent", "CaptionedVideo"]


@dataclass(frozen=True)
class CaptionedEvent:
    """One captioned event: ``[start_s, end_s]`` seconds and what happens."""

    start_s: float
    end_s: float
    description: str


@dataclass(frozen=True)
class CaptionedVideo:
    """The captions of one video, under the id the caller knows it by (a sample id, a path)."""

    video_id: str
    scene: str = ""
    events: tuple[CaptionedEvent, ...] = ()

    @classmethod
    def from_caption(cls, video_id: str, caption: dict) -> "CaptionedVideo":
        """From a ``Marlin.caption`` result (``{"scene", "events": [{"start", "end", "description"}]}``)."""
        events = tuple(
            CaptionedEvent(float(e["start"]), float(e["end"]), str(e["description"])) for e in caption.get("events", [])
        )
        return cls(video_id, str(caption.get("scene") or ""), events)

    @property
    def text(self) -> str:
        """Scene and event descriptions as one text (the document BM25 ranks)."""
        return "\n".join([self.scene, *(event.description for event in self.events)])


class CaptionIndex:
    """Tokenized captions of a library plus its term statistics.

    Args:
        videos: the captioned videos; ids must be unique.

    Raises:
        ValueError: two videos share an id.
    """

    def __init__(self, videos: Iterable[CaptionedVideo]):
        self.videos: list[CaptionedVideo] = list(videos)
        self.position = {video.video_id: i for i, video in enumerate(self.videos)}
        if len(self.position) != len(self.videos):
            raise ValueError("CaptionIndex: video ids must be unique")
        self.scene_terms = [tokenize(video.scene) for video in self.videos]
        self.event_terms = [[tokenize(event.description) for event in video.events] for video in self.videos]
        self.terms = LibraryTerms(
            [scene + [t for event in events for t in event]
             for scene, events in zip(self.scene_terms, self.event_terms)]
        )

    def __len__(self) -> int:
        return len(self.videos)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.position

    def video(self, video_id: str) -> CaptionedVideo:
        return self.videos[self.position[video_id]]

    def scene_and_events(self, video_id: str) -> tuple[list[str], Sequence[list[str]]]:
        """The tokens of a video's scene and of each of its events (in event order)."""
        i = self.position[video_id]
        return self.scene_terms[i], self.event_terms[i]
