"""Media given by reference: a URL, a file path or raw bytes.

Image, Audio, Video and bytes parameters accept these on the caller's side
(the seed's ``*_by_url``, ``*_by_filepath``, ``*_by_bytes``); the caller reads
them and sends the bytes. URL fetching is deliberately narrow: http and https
only, a size cap, a timeout, and no redirect to another scheme.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

#: Largest download accepted, in bytes (``JUPYTER_DEPLOY_MAX_FETCH_BYTES`` overrides).
MAX_FETCH_BYTES = 64 * 2**20
#: Seconds to wait for a URL (connect and each read).
FETCH_TIMEOUT = 15.0
_SCHEMES = ("http", "https")


class _SameSchemesOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(f"refused a redirect from {req.full_url} to {scheme}: (only http and https)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# Only http(s) handlers: urllib's default opener would also open file:, ftp: and data: URLs.
_opener = urllib.request.OpenerDirector()
for _handler in (urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(), _SameSchemesOnly(),
                 urllib.request.HTTPErrorProcessor(), urllib.request.HTTPDefaultErrorHandler()):
    _opener.add_handler(_handler)


def fetch_url(url: str, max_bytes: int | None = None, timeout: float = FETCH_TIMEOUT) -> bytes:
    """Download ``url`` (http or https) and return its body.

    Raises ValueError for a refused scheme or redirect, a body over
    ``max_bytes``, an HTTP error status or a network failure.

    Example::

        data = fetch_url("https://example.com/cat.jpg")
    """
    limit = max_bytes if max_bytes is not None else int(
        os.environ.get("JUPYTER_DEPLOY_MAX_FETCH_BYTES", MAX_FETCH_BYTES))
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"cannot fetch {url!r}: only http and https URLs are allowed")
    try:
        with _opener.open(url, timeout=timeout) as resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ValueError(f"{url} is {int(declared)} bytes, over the {limit}-byte limit")
            body = _read_until(resp, limit + 1, time.monotonic() + timeout, url)
    except urllib.error.HTTPError as e:
        raise ValueError(f"cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ValueError(f"cannot fetch {url}: {reason}") from None
    except http.client.HTTPException as e:  # something answered, but not in HTTP
        raise ValueError(f"cannot fetch {url}: the server did not answer in HTTP "
                         f"({type(e).__name__})") from None
    if len(body) > limit:
        raise ValueError(f"{url} is over the {limit}-byte limit")
    return body


def _read_until(resp: Any, limit: int, deadline: float, url: str) -> bytes:
    # The socket timeout bounds each read; this bounds the whole download, so a
    # server trickling a few bytes at a time cannot hold a call open forever.
    chunks, size = [], 0
    while size < limit:
        if time.monotonic() > deadline:
            raise ValueError(f"cannot fetch {url}: timed out")
        chunk = resp.read1(min(1 << 16, limit - size))  # what has arrived, not a full 64 KiB
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_media(ref: Any) -> bytes:
    """The bytes behind a media reference: bytes as they are, a URL fetched, a path read."""
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return bytes(ref)
    if isinstance(ref, str) and ref.startswith(("http://", "https://")):
        return fetch_url(ref)
    path = Path(ref)
    if not path.is_file():
        raise ValueError(f"no such file: {str(path)!r} (give a file path, a URL or bytes)")
    return path.read_bytes()
