"""Object storage in: `s3://bucket/prefix` (any fsspec URL: `gs://`, `memory://`, ...).

Through fsspec and its backends (s3fs for S3), an optional extra
(`pip install 'distill[storage]'`), imported only when a URL is given. Credentials come
from where the backend looks for them (for S3: the environment, `~/.aws/config` and
`~/.aws/credentials`, instance roles); a URL holding any (`s3://key:secret@bucket`) is
refused, so that none ever reaches the manifest, which records the URL.

The walk mirrors the folder walk (engine.label.discover): depth-first, the entries of
each "directory" (a prefix up to the next "/") sorted by name, hidden names skipped, so a
bucket and a folder holding the same tree yield the same names in the same order. Each
prefix is listed when the walk reaches it, paged by the backend (S3 returns 1,000 keys a
page), and no listing is cached, so memory does not grow with the bucket.

An object takes a round trip to read, far longer than it takes to decode, so reads are
overlapped: a pool of `READ_AHEAD` threads fetches the objects just ahead of the one the
pipeline is decoding (discovery stays `READ_AHEAD` sources ahead). A read that fails is
tried again (`ATTEMPTS` in all, backing off), then it is a failure entry with its reason.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.label.decode import DecodeError
from engine.label.discover import Source, is_image_name

EXTRA = "storage"
# Objects in flight: enough round trips overlapped to keep a few decoders fed at tens of
# milliseconds a request, and at most this many objects' bytes held ahead of decoding.
READ_AHEAD = 16
ATTEMPTS = 3
BACKOFF_SECONDS = 0.2  # before the 2nd attempt; doubled before each next one

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(text: str) -> bool:
    """Whether `text` is a URL (`scheme://...`) rather than a local path."""
    return _URL.match(str(text)) is not None


def open_storage(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, the URL's path in it) for `url`. UserError when the extra is not
    installed, the URL holds credentials or its prefix does not exist."""
    scheme = _URL.match(url).group(1)
    if "@" in url[len(scheme) + 3:].split("/", 1)[0]:
        raise UserError(f"credentials in a URL are refused (they would be recorded): give them through the "
                        f"environment or the standard config instead: {scheme}://...")
    try:
        import fsspec

        # No listing cache: the walk lists each prefix once, and a cache would grow with the bucket.
        fs, path = fsspec.core.url_to_fs(url, use_listings_cache=False, skip_instance_cache=True)
    except ImportError as error:
        raise UserError(f"reading {scheme}:// needs the {EXTRA} extra: pip install 'distill[{EXTRA}]' "
                        f"({error})") from None
    except ValueError as error:
        raise UserError(f"cannot read {url}: {error}") from None
    path = path.rstrip("/")
    try:
        found = fs.isdir(path)
    except Exception as error:  # the backend's own (botocore, aiohttp, ...): one line for the user
        raise UserError(f"cannot list {url}: {' '.join(str(error).split())}") from None
    if not found:
        raise UserError(f"no such prefix: {url}")
    return fs, path


def storage_sources(fs: Any, root: str, with_bytes: bool = True, read_ahead: int = READ_AHEAD,
                    attempts: int = ATTEMPTS) -> Iterator[Source]:
    """The image objects under `root` in `fs`, in walk order (module docstring), named
    relative to `root`, their bytes fetched `read_ahead` sources ahead (with_bytes=False:
    listed only, for counting)."""
    listing = _walk(fs, root)
    if not with_bytes:
        yield from listing
        return
    pool = ThreadPoolExecutor(read_ahead, thread_name_prefix="read")
    pending: deque[Source] = deque()
    try:
        for source in listing:
            if source.problem is None:
                future = pool.submit(read_object, fs, str(source.path), attempts)
                source = replace(source, read=_Result(future))
            pending.append(source)
            if len(pending) >= read_ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    except BaseException:  # the run stopped early: drop the reads nobody will decode
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=False)  # the last reads, handed out already, still finish


def _walk(fs: Any, root: str) -> Iterator[Source]:
    stack = [_listing(fs, root, root)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if isinstance(entry, Source):  # a prefix that could not be listed
            yield entry
            continue
        path, kind = entry["name"].rstrip("/"), entry["type"]
        name = path[len(root) + 1:]
        if kind == "directory":
            stack.append(_listing(fs, path, root))
        elif is_image_name(name):
            yield Source(Path(path), name)


def _listing(fs: Any, prefix: str, root: str) -> Iterator[dict | Source]:
    """The entries directly under `prefix`, sorted by base name, hidden ones left out; or
    one Source saying why it cannot be listed."""
    try:
        entries = fs.ls(prefix, detail=True)
    except Exception as error:  # the backend's own errors: a failure entry, not a crash
        yield Source(Path(prefix), prefix[len(root) + 1:] or ".", f"cannot list prefix: {_one_line(error)}")
        return
    keyed = []
    for entry in entries:
        path = entry["name"].rstrip("/")
        base = path.rsplit("/", 1)[-1]
        if path == prefix or base.startswith("."):  # S3's "folder" placeholder object, hidden names
            continue
        keyed.append((base, entry))
    yield from (entry for _, entry in sorted(keyed, key=lambda pair: pair[0]))


def read_object(fs: Any, path: str, attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS) -> bytes:
    """The object's bytes, tried `attempts` times; DecodeError with the reason after the
    last failure (at once for an object that is gone or forbidden)."""
    for attempt in range(attempts):
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            raise DecodeError("object not found") from None
        except PermissionError:
            raise DecodeError("permission denied") from None
        except Exception as error:  # throttling, a dropped connection, a 5xx: worth another try
            last = error
        if attempt + 1 < attempts:
            time.sleep(backoff * 2 ** attempt)
    raise DecodeError(f"read failed after {attempts} attempts: {_one_line(last)}")


class _Result:
    """`Source.read` for an object being fetched by the read-ahead pool."""

    __slots__ = ("future",)

    def __init__(self, future: Future) -> None:
        self.future = future

    def __call__(self) -> bytes:
        return self.future.result()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
