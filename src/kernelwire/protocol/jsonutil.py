"""JSON and dates for the wire: orjson, with a careful fallback.

Headers carry ISO 8601 dates; :func:`parse_date` turns them into timezone-aware
``datetime`` objects (naive dates are taken as UTC, as the spec says dates are UTC).
"""

from __future__ import annotations

import base64
import json
import math
import numbers
from collections.abc import Mapping
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any

import orjson

_FAST_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY


def _default(obj: Any) -> Any:
    """Turn what orjson cannot encode into JSON: the same rules jupyter front ends expect."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, datetime):
        return format_date(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items()}
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as UTF-8 JSON bytes.

    The fast path is orjson; objects it refuses (non-string keys, integers beyond
    64 bits, foreign number types) are retried through the standard library.
    """
    try:
        return orjson.dumps(obj, default=_default, option=_FAST_OPTIONS)
    except TypeError:
        text = json.dumps(obj, default=_default, ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")


def loads(data: bytes | memoryview | str) -> Any:
    """Decode UTF-8 JSON bytes (raises ``orjson.JSONDecodeError``, a ``ValueError``)."""
    return orjson.loads(data)


def format_date(value: datetime) -> str:
    """Format a datetime the way Jupyter headers do (UTC, with a ``Z`` suffix)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    text = value.astimezone(timezone.utc).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _normalise_iso(text: str) -> str:
    # Python 3.10's fromisoformat takes neither 'Z' nor fractions other than 3 or 6 digits.
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    head, sep, tail = text.partition(".")
    if sep:
        digits = 0
        while digits < len(tail) and tail[digits].isdigit():
            digits += 1
        fraction = (tail[:digits] + "000000")[:6]
        text = f"{head}.{fraction}{tail[digits:]}"
    return text


@lru_cache(maxsize=512)
def parse_date(text: str) -> datetime | str:
    """Parse an ISO 8601 date into an aware ``datetime`` (``text`` unchanged if it is not one).

    Cached: every output of a request carries the same parent date, so most calls are hits.

    >>> parse_date("2024-05-01T12:00:00.5Z").isoformat()
    '2024-05-01T12:00:00.500000+00:00'
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(_normalise_iso(text))
        except ValueError:
            return text
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)
