"""Marlin-2B's text contract: the two prompts it was trained on and the parsers of its answers.

The prompts and the parsers live together, apart from the code that runs the model, because they are
two sides of one agreement: the model answers the caption prompt with

    Scene: <one paragraph>

    Events:
    <0.0 - 3.0> <short description>
    <3.0 - 6.5> <short description>

and the find prompt with ``From 3.0 to 4.0.`` (seconds, one decimal). The result dicts have the
exact shapes of the reference helpers ``model.caption()`` / ``model.find()``; the extra keys
(``format_ok``, ``truncated``, ``dropped_lines`` on captions) only add information.

Parsing never raises on a string: a failure is data (no events, ``span`` None, ``format_ok`` False)
and the raw text always comes back. Times are returned exactly as the model wrote them, in model
order, even when reversed or beyond the video: :mod:`marlin_core.sanitize` fixes those and says so.
The reference helpers instead drop reversed ranges at parse time; keeping them lets the caller
report what it changed.

Units: every time is in seconds from the start of the clip the model saw.
"""

from __future__ import annotations

import re
from typing import TypedDict

CAPTION_PROMPT = (
    "Provide a spatial description of this clip followed by time-ranged events.\n"
    "For each event, give the time range as <start - end> and a short description."
)
FIND_PROMPT_TEMPLATE = (
    'Identify the timestamps during which "{query}" takes place. '
    'Output the time range as "From <start> to <end>." (numbers in seconds).'
)

# The trained format writes every time with one decimal (``<6.5 - 9.0>``, ``From 3.0 to 4.0.``):
# the processor shows the model its frame times as ``<X.X seconds>``.
TIME_DECIMALS = 1
# The query sits inside double quotes in the find prompt; a double quote inside it would end the
# quotation early, so it becomes a single quote (the model reads the same event text).
QUERY_QUOTE_REPLACEMENT = "'"

# A number the model may write: ``3``, ``3.0``, ``.5``. ASCII digits only, so float() never fails.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# ``s``, ``sec``, ``secs``, ``second``, ``seconds`` after a number.
_UNIT = r"(?:seconds?|secs?|s)\b"
_RANGE = rf"(?P<start>{_NUMBER})\s*(?:{_UNIT})?\s*[-\u2013\u2014]\s*(?P<end>{_NUMBER})\s*(?:{_UNIT})?"
# An event line: ``<5.2 - 8.7> text`` (trained), tolerating spaces, units, a list bullet, and, once
# inside the events section, ``5.2 - 8.7: text`` without brackets.
_BULLET = r"(?:[-*\u2022]\s+)?"
_BRACKETED_EVENT = re.compile(rf"^\s*{_BULLET}<\s*{_RANGE}\s*>\s*(?P<description>.*)$", re.IGNORECASE)
_BARE_EVENT = re.compile(rf"^\s*{_BULLET}{_RANGE}(?:\s*:\s*|\s+)(?P<description>.*)$", re.IGNORECASE)
# The start of an event line whose time range never closed (``<``, ``<8.5 - 1``): the generation
# stopped inside it.
_UNCLOSED_RANGE = re.compile(rf"^\s*{_BULLET}<\s*(?:[0-9.][^>]*)?$")
_SCENE_HEADER = re.compile(r"^\s*scene\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_EVENTS_HEADER = re.compile(r"^\s*events\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
# A finished description ends a sentence (every real one does: ``...looks around.``).
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")

_SPAN = re.compile(
    rf"\bfrom\s+(?P<start>{_NUMBER})\s*(?:{_UNIT})?\s*to\s+(?P<end>{_NUMBER})\s*(?:{_UNIT})?",
    re.IGNORECASE,
)
# The caption's range form in a find answer: ``<5.0 - 7.5>`` anywhere, or ``5.0 - 7.5`` as the whole answer
# (a bare dash pair inside a sentence, "3-4 people", is not read as a span).
_DASH_SPAN_BRACKETED = re.compile(rf"<\s*{_RANGE}\s*>", re.IGNORECASE)
_DASH_SPAN_ALONE = re.compile(rf"^\s*{_RANGE}\s*\.?\s*$", re.IGNORECASE)

# Thinking: Marlin's responses start with a bare ``<think>`` (training artifact), and may carry a
# whole ``<think>...</think>`` block or a stray ``</think>``; the reference strips all three.
_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s*")
_THINK_OPEN_AT_START = re.compile(r"^\s*<think>\s*", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>\s*", re.IGNORECASE)


class Event(TypedDict):
    """One time-ranged event of a caption, in seconds."""

    start: float
    end: float
    description: str


class CaptionResult(TypedDict):
    """What :func:`parse_caption` returns; the first four keys are the reference ``.caption()``'s."""

    caption: str
    scene: str
    events: list[Event]
    raw: str
    format_ok: bool
    truncated: bool
    dropped_lines: list[str]


class FindResult(TypedDict):
    """What :func:`parse_find` returns: exactly the reference ``.find()``'s keys."""

    raw: str
    span: tuple[float, float] | None
    format_ok: bool


def find_prompt(query: str) -> str:
    """The canonical find prompt for one event query.

    The query is cleaned so the prompt reads as trained: surrounding whitespace is removed, runs of
    whitespace (newlines included) become one space, and double quotes become single quotes so the
    quotation around the query stays intact. A clean query gives the byte-exact reference prompt.

    Args:
        query: the event to look for, in words (e.g. ``a squirrel looks at a purple butterfly``).

    Returns:
        The user text to put after the video.

    Raises:
        ValueError: the query is empty or only whitespace.
        TypeError: the query is not a string.
    """
    if not isinstance(query, str):
        raise TypeError(f"find_prompt: query must be a string, got {type(query).__name__}")
    cleaned = " ".join(query.split()).replace('"', QUERY_QUOTE_REPLACEMENT)
    if not cleaned:
        raise ValueError("find_prompt: the query is empty; give the event to look for, e.g. 'a dog jumps'")
    return FIND_PROMPT_TEMPLATE.format(query=cleaned)


def strip_thinking(text: str) -> str:
    """Remove ``<think>...</think>`` blocks, a leading bare ``<think>`` and stray ``</think>`` tags.

    Args:
        text: a decoded generation.

    Returns:
        The answer without thinking, with surrounding whitespace removed (as the reference does).

    Raises:
        TypeError: ``text`` is not a string.
    """
    _require_str(text, "strip_thinking")
    return _remove_think_tags(text).strip()


def format_events(events: list[Event]) -> str:
    """Write events in the trained form, one ``<5.2 - 8.7> description`` line each.

    Times are rounded to one decimal as the model writes them; a description is put on one line.
    Lines are joined by ``\\n`` with no trailing newline, as in real generations.

    Args:
        events: dicts with ``start`` and ``end`` (seconds) and ``description``.

    Returns:
        The events section of a caption.
    """
    return "\n".join(
        f"<{_format_time(e['start'])} - {_format_time(e['end'])}> {_one_line(e['description'])}"
        for e in events
    )


def format_caption(scene: str, events: list[Event]) -> str:
    """Write a whole caption answer in the trained form (``Scene: ...``, blank line, ``Events:``, lines).

    Args:
        scene: the paragraph describing the clip (put on one line).
        events: as for :func:`format_events`.

    Returns:
        The text the model is trained to generate for the caption prompt.
    """
    return f"Scene: {_one_line(scene)}\n\nEvents:\n{format_events(events)}"


def format_find(start: float, end: float) -> str:
    """Write a find answer in the trained form, e.g. ``From 3.0 to 4.0.``.

    Args:
        start: span start in seconds.
        end: span end in seconds.

    Returns:
        The text the model is trained to generate for the find prompt.
    """
    return f"From {_format_time(start)} to {_format_time(end)}."


def parse_caption(text: str, *, truncated: bool = False) -> CaptionResult:
    """Parse a caption answer into scene and events, tolerating what real generations do.

    Tolerated: thinking tags, missing ``Scene:`` or ``Events:`` headers, CRLF, extra spaces,
    ``s``/``sec`` after numbers, list bullets, and an answer cut off at ``max_new_tokens``. When the
    caller says the generation was cut off, or the last event line is evidently unfinished (its
    ``<`` never closed, or nothing follows the ``>``), the unfinished event is dropped, the complete
    ones are kept and ``truncated`` is True. After a cut-off, a last event whose description ends a
    sentence is kept: the cut fell just after it.

    Args:
        text: the decoded generation (special tokens skipped).
        truncated: True when generation stopped at ``max_new_tokens`` instead of end-of-turn.

    Returns:
        ``caption`` (text without thinking, as the reference), ``scene``, ``events`` (model order,
        times in seconds exactly as written), ``raw`` (the text given), ``format_ok`` (the answer is
        exactly the trained format: :func:`format_caption` of what was parsed), ``truncated``, and
        ``dropped_lines`` (lines of the events section that gave no event, e.g. the unfinished one).

    Raises:
        TypeError: ``text`` is not a string.
    """
    _require_str(text, "parse_caption")
    caption = strip_thinking(text)
    ends_with_newline = _remove_think_tags(text).rstrip(" \t").endswith(("\n", "\r"))
    lines = _normalise_newlines(caption).split("\n")

    events_at = _events_section_start(lines)
    scene = _scene_text(lines[:events_at])
    section = _events_section(lines, events_at)
    events, dropped, last_parsed = _parse_event_lines(section)

    truncated = bool(truncated)
    last_line = section[-1] if section else None
    if truncated and last_parsed and not ends_with_newline and not _SENTENCE_END.search(events[-1]["description"]):
        events.pop()
        dropped.append(last_line.strip())
    elif last_line is not None and not last_parsed and _is_unfinished_event(last_line):
        truncated = True

    format_ok = bool(events) and not truncated and caption == format_caption(scene, events)
    return CaptionResult(
        caption=caption,
        scene=scene,
        events=events,
        raw=text,
        format_ok=format_ok,
        truncated=truncated,
        dropped_lines=dropped,
    )


def parse_find(text: str) -> FindResult:
    """Parse a find answer into a time span.

    The first ``From <start> to <end>`` anywhere in the answer counts (case, spaces, ``s``/``sec``
    units and thinking tags tolerated). Without one, the caption's range form is read: ``<5.0 - 7.5>``
    anywhere, or ``5.0 - 7.5`` as the whole answer (``format_ok`` is then False). The span is returned as
    written, even reversed or beyond the video: :func:`marlin_core.sanitize.sanitize_span` fixes it.

    Args:
        text: the decoded generation (special tokens skipped).

    Returns:
        ``raw`` (the text given, as the reference returns it), ``span`` (``(start, end)`` floats in
        seconds, or None when no span was found) and ``format_ok`` (the answer, without thinking
        and surrounding whitespace, is exactly the trained ``From 3.0 to 4.0.``).

    Raises:
        TypeError: ``text`` is not a string.
    """
    _require_str(text, "parse_find")
    answer = strip_thinking(text)
    match = _SPAN.search(answer) or _DASH_SPAN_BRACKETED.search(answer) or _DASH_SPAN_ALONE.match(answer)
    span = (float(match["start"]), float(match["end"])) if match else None
    format_ok = span is not None and answer == format_find(*span)
    return FindResult(raw=text, span=span, format_ok=format_ok)


def _require_str(text: object, where: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{where}: expected the decoded generation as a string, got {type(text).__name__}")


def _remove_think_tags(text: str) -> str:
    text = _remove_think_blocks(text)
    text = _THINK_OPEN_AT_START.sub("", text)
    return _THINK_CLOSE.sub("", text)


def _remove_think_blocks(text: str) -> str:
    """Remove each ``<think>`` up to the next ``</think>`` and the whitespace after it.

    The same as substituting ``<think>.*?</think>\\s*``, in one pass over the tags: the regex
    rescans to the end of the text for every unclosed ``<think>``.
    """
    kept: list[str] = []
    kept_from = 0
    open_at = None
    for tag in _THINK_TAG.finditer(text):
        is_close = bool(tag.group(1))
        if not is_close and open_at is None:
            open_at = tag.start()
        elif is_close and open_at is not None:
            kept.append(text[kept_from:open_at])
            kept_from = _WHITESPACE.match(text, tag.end()).end()
            open_at = None
    kept.append(text[kept_from:])
    return "".join(kept)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _format_time(seconds: float) -> str:
    return f"{float(seconds):.{TIME_DECIMALS}f}"


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text).strip()


def _events_section_start(lines: list[str]) -> int:
    """Index of the line where the events section starts (``len(lines)`` when there is none).

    The ``Events:`` header starts it; without one, the first bracketed event line does, or a last
    line that is an unfinished bracketed event.
    """
    for index, line in enumerate(lines):
        if _EVENTS_HEADER.match(line):
            return index
    for index, line in enumerate(lines):
        if _BRACKETED_EVENT.match(line):
            return index
    if lines and _UNCLOSED_RANGE.match(lines[-1]):
        return len(lines) - 1
    return len(lines)


def _scene_text(lines: list[str]) -> str:
    """The scene paragraph: from the ``Scene:`` header on, or all lines before the events."""
    for index, line in enumerate(lines):
        header = _SCENE_HEADER.match(line)
        if header:
            return "\n".join([header["rest"], *lines[index + 1 :]]).strip()
    return "\n".join(lines).strip()


def _events_section(lines: list[str], events_at: int) -> list[str]:
    """The non-blank lines of the events section, the header's own text included."""
    section = lines[events_at:]
    if section:
        header = _EVENTS_HEADER.match(section[0])
        if header:
            section = [header["rest"], *section[1:]]
    return [line for line in section if line.strip()]


def _parse_event_lines(lines: list[str]) -> tuple[list[Event], list[str], bool]:
    """Events of the section's lines, the lines that gave none, and whether the last line gave one."""
    events: list[Event] = []
    dropped: list[str] = []
    last_parsed = False
    for line in lines:
        match = _BRACKETED_EVENT.match(line) or _BARE_EVENT.match(line)
        description = match["description"].strip() if match else ""
        last_parsed = bool(description)
        if last_parsed:
            events.append(Event(start=float(match["start"]), end=float(match["end"]), description=description))
        else:
            dropped.append(line.strip())
    return events, dropped, last_parsed


def _is_unfinished_event(line: str) -> bool:
    """A time range whose ``<`` never closed, or a closed range with nothing after it."""
    if _UNCLOSED_RANGE.match(line):
        return True
    match = _BRACKETED_EVENT.match(line)
    return bool(match) and not match["description"].strip()
