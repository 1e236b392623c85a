"""Sources in object storage and on the web: ``s3://``, ``gs://``, ``az://`` and ``https://``.

A remote source is read through fsspec and its standard filesystems (s3fs, gcsfs, adlfs,
aiohttp for HTTP), installed with ``pip install 'e5-integrations[cloud]'``. Credentials come
the way each cloud's own tools find them (environment, profiles, instance roles); what is
left (an S3-compatible endpoint, an account name) is given as *storage options*
(``--storage-option KEY=VALUE``, ``storage_options=`` in Python), which are handed to the
filesystem and never printed.

What this module guarantees:

- **Canonical ids.** An object's file id (and the id of a one-document object) is its
  canonical URL: ``s3://bucket/key``, ``gs://bucket/key``, ``az://container/path``, or an
  ``https://`` URL without its signature parameters. The same object reached through
  ``s3a://``, a MinIO endpoint or a presigned URL has the same id.
- **Lazy, paginated listing.** A prefix is listed page by page (S3: ``ListObjectsV2``
  pages, in key order), so the first object is read while the rest is still being
  listed. GCS and Azure are listed with fsspec's ``find`` (one listing, then streamed).
- **Fingerprints.** Each listed object carries what the listing says of its version
  (S3 ``VersionId`` or ``ETag``, GCS ``generation``, Azure ``etag``, an HTTP ``ETag``)
  plus its size, or its size and modification time; the pipeline compares it with what
  the store holds to skip an unchanged object without downloading it.
- **Patient reads.** A transient failure (503 SlowDown, a throttle, a connection reset
  mid-object, a timeout) is retried with the stores' back-off for
  :data:`~e5_integrations.ingest._sink.DEFAULT_RETRY_SECONDS`, resuming at the byte
  reached; an object that changed meanwhile is an error, never a mix of two versions.
  Permanent failures (no such bucket, access denied, object deleted) are raised at once,
  naming the URL.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fnmatch
import hashlib
import io
import json
import logging
import posixpath
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from e5_integrations._errors import ConfigurationError, SourceError, option
from e5_integrations._redact import redact
from e5_integrations.ingest._readers import SourceFile
from e5_integrations.ingest._records import DEFAULT_RETRY_SECONDS

__all__ = [
    "REMOTE_SCHEMES",
    "RemoteReadError",
    "FetchedSourceFile",
    "RemoteSourceFile",
    "StorageOptions",
    "canonical_url",
    "fetch_whole",
    "is_remote",
    "iter_remote_files",
    "matches_filters",
    "parse_storage_options",
    "read_ahead",
    "storage_option_secrets",
]

logger = logging.getLogger("e5_integrations.ingest")

#: URL scheme -> (fsspec protocol, canonical scheme, package that provides it).
REMOTE_SCHEMES: dict[str, tuple[str, str, str]] = {
    "s3": ("s3", "s3", "s3fs"),
    "s3a": ("s3", "s3", "s3fs"),
    "gs": ("gcs", "gs", "gcsfs"),
    "gcs": ("gcs", "gs", "gcsfs"),
    "az": ("abfs", "az", "adlfs"),
    "abfs": ("abfs", "az", "adlfs"),
    "abfss": ("abfs", "az", "adlfs"),
    "http": ("http", "http", "aiohttp"),
    "https": ("https", "https", "aiohttp"),
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Query parameters of signed URLs (S3, GCS, Azure SAS, CloudFront): dropped from ids, masked in output.
_SIGNING_PARAMS = re.compile(
    r"^(x-amz-.*|x-goog-.*|signature|expires|awsaccesskeyid|key-pair-id|policy|"
    r"sig|se|sp|sv|sr|st|spr|srt|ss|skoid|sktid|skt|ske|sks|skv|sdd|ses|sip)$",
    re.IGNORECASE,
)
#: Storage option names whose value is a secret (masked wherever it could be printed).
_SECRET_OPTION = re.compile(
    r"(secret|key|token|password|passwd|sas|credential|connection[_-]?string|signature)", re.IGNORECASE
)
#: Bytes per ranged GET when streaming an object.
BLOCK_SIZE = 8 * 1024 * 1024
#: Back-off of a transient read failure: first wait, doubled up to the cap (the stores' values).
BASE_DELAY = 0.5
MAX_DELAY = 5.0

StorageOptions = Mapping[str, Any]


class RemoteReadError(OSError):
    """An object could not be listed or read; the message names the URL and what to do."""


def is_remote(source: object) -> bool:
    """Whether ``source`` is a URL with a scheme (``s3://...``) rather than a local path."""
    return isinstance(source, str) and _SCHEME.match(source) is not None


def _scheme(url: str) -> tuple[str, str, str]:
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme not in REMOTE_SCHEMES:
        raise ConfigurationError(
            f"source {redact(url)!r} has the scheme {scheme!r}; expected a local path or a URL starting with "
            + ", ".join(f"{name}://" for name in REMOTE_SCHEMES)
        )
    return REMOTE_SCHEMES[scheme]


def _strip_signature(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SIGNING_PARAMS.match(k)]
    return urlunsplit(parts._replace(query=urlencode(kept), fragment=""))


def canonical_url(url: str) -> str:
    """The id of the object at ``url``: the canonical scheme (``s3a://`` → ``s3://``,
    ``abfs://`` → ``az://``), no ``user@``/``@account`` parts, no signature parameters."""
    protocol, canonical, _ = _scheme(url)
    if protocol in ("http", "https"):
        return _strip_signature(url)
    rest = url.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    bucket = bucket.rsplit("@", 1)[0] if protocol != "abfs" else bucket.split("@", 1)[0]
    return f"{canonical}://{bucket}/{key}"


def parse_storage_options(items: Iterable[str] | None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--storage-option``) as a dict; ``true``/``false``/numbers
    become booleans and numbers, a dotted key (``client_kwargs.region_name=x``) a nested dict."""
    options: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"{option('storage_options')} {redact(item)!r} is not KEY=VALUE; pass e.g. "
                "endpoint_url=http://127.0.0.1:9000"
            )
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        elif re.fullmatch(r"-?\d+", raw):
            value = int(raw)
        elif re.fullmatch(r"-?\d+\.\d*", raw):
            value = float(raw)
        target = options
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigurationError(f"{option('storage_options')} {key!r} conflicts with another option")
        target[leaf] = value
    return options


def storage_option_secrets(options: StorageOptions | None) -> list[str]:
    """The values of ``options`` that are secrets (keys, tokens, passwords, SAS), nested too."""
    found: list[str] = []
    for key, value in (options or {}).items():
        if isinstance(value, Mapping):
            found.extend(storage_option_secrets(value))
        elif _SECRET_OPTION.search(str(key)) and value not in (None, True, False):
            found.append(str(value))
    return found


def matches_filters(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a file at ``relative`` (POSIX path under its source) passes ``--include`` /
    ``--exclude``. A pattern with a ``/`` is matched against the whole relative path, one
    without against the file name; ``*`` matches across ``/`` in path patterns."""

    def hit(pattern: str) -> bool:
        target = relative if "/" in pattern else posixpath.basename(relative)
        return fnmatch.fnmatchcase(target, pattern)

    if include and not any(hit(pattern) for pattern in include):
        return False
    return not any(hit(pattern) for pattern in exclude)


def _filesystem(protocol: str, storage_options: StorageOptions) -> Any:
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(
            "reading s3://, gs://, az:// and https:// sources needs fsspec; install it with: "
            "pip install 'e5-integrations[cloud]'"
        ) from exc
    package = next(pkg for proto, _, pkg in REMOTE_SCHEMES.values() if proto == protocol)
    try:
        return fsspec.filesystem(protocol, **dict(storage_options))
    except ImportError as exc:
        raise ImportError(
            f"reading {protocol}:// sources needs {package}; install it with: "
            "pip install 'e5-integrations[cloud]'"
        ) from exc
    except TypeError as exc:
        raise ConfigurationError(
            f"{option('storage_options')}: the {protocol} filesystem refuses an option ({redact(str(exc))}); "
            f"pass only options of {package}"
        ) from exc


def _fingerprint(info: Mapping[str, Any]) -> str:
    """What the listing says of an object's version: version id / generation / ETag plus
    its size, else size and modification time; ``""`` when it says nothing usable."""
    size = info.get("size", info.get("Size"))
    for name in ("VersionId", "version_id", "generation", "ETag", "etag", "md5Hash", "Content-MD5"):
        value = info.get(name)
        if value not in (None, "", "null"):
            return f"{name.lower()}={str(value).strip(chr(34))};size={size}"
    for name in ("LastModified", "last_modified", "updated", "mtime", "Last-Modified"):
        value = info.get(name)
        if value is not None and size is not None:
            return f"size={size};mtime={value}"
    return ""


def _transient(exc: BaseException) -> bool:
    """Whether a failed call is worth retrying (throttled, reset, timed out, 5xx)."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    name = type(exc).__name__
    text = f"{name} {exc}"
    markers = (
        "SlowDown",
        "Throttl",
        "ServiceUnavailable",
        "Service Unavailable",
        "InternalError",
        "RequestTimeout",
        "TooManyRequests",
        "503",
        "500",
        "502",
        "504",
        "429",
        "reset",
        "Disconnected",
        "Payload",
        "timed out",
        "Timeout",
        "ConnectionError",
        "EndpointConnectionError",
        "IncompleteRead",
        "Connection aborted",
    )
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE):
        return True
    return any(marker in text for marker in markers)


def _permanent_message(url: str, exc: BaseException, action: str) -> str:
    shown = redact(url)
    if isinstance(exc, PermissionError) or "AccessDenied" in str(exc) or "Forbidden" in str(exc):
        return (
            f"access denied when {action} {shown} ({redact(str(exc))}); check the credentials this job runs "
            "with (AWS_PROFILE / AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*), "
            f"or pass them with {option('storage_options')}"
        )
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in str(exc) or "NoSuchKey" in str(exc):
        return (
            f"not found when {action} {shown} ({redact(str(exc))}): the bucket or object does not exist "
            "(or was deleted since it was listed); check the URL"
        )
    return f"{action} {shown} failed: {redact(str(exc))}"


def _retrying(call: Any, *, url: str, action: str, budget: float) -> Any:
    """``call()``, retrying transient failures with the stores' back-off for ``budget`` s."""
    started = time.monotonic()
    delay = BASE_DELAY
    attempts = 0
    while True:
        attempts += 1
        try:
            return call()
        except RemoteReadError:
            raise
        except Exception as exc:
            if not _transient(exc):
                raise RemoteReadError(_permanent_message(url, exc, action)) from exc
            remaining = started + budget - time.monotonic()
            if remaining <= 0:
                raise RemoteReadError(
                    f"{action} {redact(url)} kept failing: {attempts} attempts over "
                    f"{time.monotonic() - started:.1f} s (last error: {redact(str(exc))}); the store is throttling "
                    "or unreachable, run again later"
                ) from exc
            wait = min(delay, remaining)
            logger.log(
                logging.WARNING if attempts == 1 else logging.DEBUG,
                "%s",
                redact(f"{action} {url} failed ({exc}); retrying in {wait:.1f} s (attempt {attempts})"),
            )
            time.sleep(wait)
            delay = min(delay * 2, MAX_DELAY)


@dataclass(frozen=True)
class RemoteSourceFile(SourceFile):
    """An object in a bucket or on the web, read through fsspec.

    ``file_id`` is the canonical URL. Storage options are never shown (not in ``repr``).

    Attributes:
        url: the canonical URL (the same as ``file_id``).
        protocol: the fsspec protocol (``s3``, ``gcs``, ``abfs``, ``https``).
        fs_path: the path the filesystem knows it by (``bucket/key``, or the URL for HTTP).
        fingerprint: the listing's version of the object (see :func:`_fingerprint`), or ``""``.
        listed_size: the size the listing gave, in bytes.
        storage_options: the filesystem's options (credentials, endpoint).
        retry_seconds: how long a transient failure is retried.
    """

    url: str = ""
    protocol: str = ""
    fs_path: str = ""
    fingerprint: str = ""
    listed_size: int | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    retry_seconds: float = field(default=DEFAULT_RETRY_SECONDS, repr=False, compare=False)

    @property
    def suffix(self) -> str:
        """The extension of the object's name, lower case."""
        return posixpath.splitext(urlsplit(self.url).path)[1].lower()

    @property
    def location(self) -> str:
        """The canonical URL (no signature, no secret)."""
        return self.url

    def size(self) -> int | None:
        """The size the listing gave."""
        return self.listed_size

    def open(self) -> IO[bytes]:
        """A buffered binary stream over ranged reads that resume after transient failures."""
        fs = _filesystem(self.protocol, self.storage_options)
        return io.BufferedReader(_ResumingReader(fs, self), buffer_size=1024 * 1024)

    def to_row(self) -> dict[str, Any]:
        """What a Ray read task needs to read it (storage options travel apart, unprinted)."""
        return {
            "url": self.url,
            "protocol": self.protocol,
            "fs_path": self.fs_path,
            "fingerprint": self.fingerprint,
            "size": -1 if self.listed_size is None else self.listed_size,
        }

    @classmethod
    def from_row(
        cls,
        row: Mapping[str, Any],
        storage_options: StorageOptions,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> RemoteSourceFile:
        """The inverse of :meth:`to_row`."""
        size = int(row["size"])
        return cls(
            path=Path(str(row["fs_path"])),
            file_id=str(row["url"]),
            url=str(row["url"]),
            protocol=str(row["protocol"]),
            fs_path=str(row["fs_path"]),
            fingerprint=str(row["fingerprint"]),
            listed_size=None if size < 0 else size,
            storage_options=storage_options,
            retry_seconds=retry_seconds,
        )


@dataclass(frozen=True)
class FetchedSourceFile(RemoteSourceFile):
    """A small object already downloaded (by a read-ahead thread), or the error that fetching
    it raised, re-raised by :meth:`open` when the object's turn comes, so problems are
    reported in listing order as if it were read then."""

    data: bytes | None = field(default=None, repr=False, compare=False)
    error: OSError | None = field(default=None, repr=False, compare=False)

    def open(self) -> IO[bytes]:
        """The fetched bytes (or the fetch's error)."""
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.data or b"")


def fetch_whole(source: RemoteSourceFile) -> FetchedSourceFile:
    """Download ``source`` whole (for small objects, on a read-ahead thread); never raises."""
    data: bytes | None = None
    error: OSError | None = None
    try:
        with source.open() as handle:
            data = handle.read()
    except OSError as exc:
        error = exc
    fields = {name: getattr(source, name) for name in source.__dataclass_fields__}
    return FetchedSourceFile(**fields, data=data, error=error)


#: Small remote objects downloaded ahead, concurrently, while the current one is parsed
#: (a GET costs tens of milliseconds: one after the other, a prefix of small objects would crawl).
READ_AHEAD = 8
#: Objects up to this size are read ahead whole; larger ones are streamed at their turn.
READ_AHEAD_MAX_BYTES = 4 * 1024 * 1024


def read_ahead(sources: Iterable[SourceFile]) -> Iterator[SourceFile]:
    """``sources`` in their order, small remote objects downloaded :data:`READ_AHEAD` at a
    time ahead of their turn (memory: at most ``READ_AHEAD`` x ``READ_AHEAD_MAX_BYTES``); a
    fetch's error is raised when the object is opened, at its turn."""
    from e5_integrations.ingest._readers import reader_for

    def small(source: SourceFile) -> bool:
        size = source.size() if isinstance(source, RemoteSourceFile) else None
        return size is not None and size <= READ_AHEAD_MAX_BYTES and reader_for(source) is not None

    pool: ThreadPoolExecutor | None = None
    pending: collections.deque[tuple[SourceFile, Future[FetchedSourceFile] | None]] = collections.deque()
    queue = iter(sources)
    try:
        while True:
            while len(pending) < READ_AHEAD:
                source = next(queue, None)
                if source is None:
                    break
                fetch: Future[FetchedSourceFile] | None = None
                if isinstance(source, RemoteSourceFile) and small(source):
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="e5-fetch")
                    fetch = pool.submit(fetch_whole, source)
                pending.append((source, fetch))
            if not pending:
                return
            source, fetch = pending.popleft()
            yield fetch.result() if fetch is not None else source
    finally:
        for _, fetch in pending:
            if fetch is not None:
                fetch.cancel()
        if pool is not None:
            pool.shutdown(wait=True)


class _ResumingReader(io.RawIOBase):
    """Ranged reads of one object; a transient failure reopens it at the byte reached."""

    def __init__(self, fs: Any, source: RemoteSourceFile) -> None:
        self._fs = fs
        self._source = source
        self._pos = 0
        self._handle: Any = None
        self._size: int | None = source.listed_size

    def _open(self) -> Any:
        if self._handle is None:

            def opener() -> Any:
                handle = self._fs.open(
                    self._source.fs_path, "rb", block_size=BLOCK_SIZE, cache_type="readahead"
                )
                details = getattr(handle, "details", None) or {}
                now = _fingerprint(details) if details else ""
                fingerprint = self._source.fingerprint
                if fingerprint and now and now.split(";")[0] != fingerprint.split(";")[0] and self._pos:
                    handle.close()
                    raise RemoteReadError(
                        f"{self._source.url} changed while it was being read (listed as {fingerprint}, now "
                        f"{now}); run again to read the new version"
                    )
                handle.seek(self._pos)
                return handle

            self._handle = _retrying(
                opener, url=self._source.url, action="opening", budget=self._source.retry_seconds
            )
        return self._handle

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            if self._size is None:
                self._size = int(self._open().size)
            self._pos = self._size + offset
        if self._handle is not None:
            self._handle.seek(self._pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")

        def read() -> bytes:
            try:
                return bytes(self._open().read(len(view)))
            except Exception:
                self._drop()
                raise

        data = _retrying(read, url=self._source.url, action="reading", budget=self._source.retry_seconds)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _drop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                handle.close()

    def close(self) -> None:
        self._drop()
        super().close()


def _split(url: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``scheme://bucket/key`` (``@account`` dropped from the bucket)."""
    rest = url.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket.split("@", 1)[0], key


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/") if part)


async def _take(pages: Any, count: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``count`` entries of an async listing, and whether it ended."""
    items: list[dict[str, Any]] = []
    try:
        while len(items) < count:
            items.append(await pages.__anext__())
    except StopAsyncIteration:
        return items, True
    return items, False


#: Entries taken from the async listing per call into its event loop (one S3 page).
_LIST_TAKE = 1000


def _s3_objects(fs: Any, bucket: str, prefix: str, url: str, budget: float) -> Iterator[dict[str, Any]]:
    """Objects under ``prefix`` in key order, one ``ListObjectsV2`` page at a time; a
    transient failure restarts the listing after the last key handed out."""
    from fsspec.asyn import sync

    last: str | None = None
    while True:
        pages = fs._iterdir(bucket, prefix=prefix, delimiter="")
        try:
            while True:
                items, ended = _retrying_once(
                    lambda pages=pages: sync(fs.loop, _take, pages, _LIST_TAKE), url=url
                )
                for info in items:
                    key = str(info.get("Key", info.get("name", "")))
                    key = key.split("/", 1)[1] if key.startswith(bucket + "/") else key
                    if last is not None and key <= last:
                        continue
                    last = key
                    yield {**info, "_key": key}
                if ended:
                    return
        except _TransientListing as exc:
            logger.warning(
                "%s", redact(f"listing {url} failed ({exc.__cause__}); listing again after {last!r}")
            )
            time.sleep(BASE_DELAY)
            budget -= BASE_DELAY
            if budget <= 0:
                raise SourceError(
                    f"listing {redact(url)} kept failing ({redact(str(exc.__cause__))}); the store is "
                    f"throttling or unreachable: run again later, or wait longer with {option('retry_seconds')}"
                ) from exc


class _TransientListing(Exception):
    pass


def _retrying_once(call: Any, *, url: str) -> Any:
    try:
        return call()
    except Exception as exc:
        if _transient(exc):
            raise _TransientListing() from exc
        raise SourceError(_permanent_message(url, exc, "listing")) from exc


def iter_remote_files(
    url: str,
    storage_options: StorageOptions | None = None,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    retry_seconds: float = DEFAULT_RETRY_SECONDS,
) -> Iterator[RemoteSourceFile]:
    """The objects at ``url`` (one object, or every object under a prefix), lazily.

    Objects whose path under ``url`` has a part starting with ``.`` are left out, as local
    dot-files are, and so are "directory" markers (keys ending in ``/``).

    Raises:
        SourceError: the bucket does not exist, access is denied, or nothing is at ``url``.
        ImportError: the filesystem package is missing (names the ``cloud`` extra).
    """
    protocol, _, _ = _scheme(url)
    options = dict(storage_options or {})
    fs = _filesystem(protocol, options)
    found = False

    def make(fs_path: str, canonical: str, info: Mapping[str, Any]) -> RemoteSourceFile:
        size = info.get("size", info.get("Size"))
        return RemoteSourceFile(
            path=Path(fs_path),
            file_id=canonical,
            url=canonical,
            protocol=protocol,
            fs_path=fs_path,
            fingerprint=_fingerprint(info),
            listed_size=int(size) if size is not None else None,
            storage_options=options,
            retry_seconds=retry_seconds,
        )

    if protocol in ("http", "https"):
        info = _retrying(lambda: fs.info(url), url=canonical_url(url), action="reading", budget=retry_seconds)
        name = posixpath.basename(urlsplit(url).path)
        if matches_filters(name, include, exclude):
            yield make(url, canonical_url(url), info)
        return
    canonical = canonical_url(url)
    scheme = canonical.split("://", 1)[0]
    bucket, key = _split(url)
    if protocol == "s3" and hasattr(fs, "_iterdir"):
        entries: Iterable[Mapping[str, Any]] = _s3_objects(fs, bucket, key, canonical, retry_seconds)
    else:
        entries = _find(fs, f"{bucket}/{key}", canonical, bucket)
    base = key.rstrip("/")
    for info in entries:
        object_key = str(info["_key"])
        if object_key.endswith("/"):
            continue
        if object_key == base and not key.endswith("/"):
            relative = posixpath.basename(object_key)
        elif not base or object_key.startswith(base + "/"):
            relative = object_key[len(base) :].lstrip("/") if base else object_key
        else:
            continue  # "docs2/x" under the prefix "docs"
        if _hidden(relative) or not matches_filters(relative, include, exclude):
            continue
        found = True
        yield make(f"{bucket}/{object_key}", f"{scheme}://{bucket}/{object_key}", info)
    if not found:
        logger.info("%s", f"no objects under {canonical}")


def _find(fs: Any, path: str, url: str, bucket: str) -> Iterator[dict[str, Any]]:
    """GCS, Azure: fsspec's ``find`` (one listing), in path order."""
    try:
        listing = fs.find(path, detail=True, withdirs=False)
    except Exception as exc:
        raise SourceError(_permanent_message(url, exc, "listing")) from exc
    for name in sorted(listing):
        info = listing[name]
        key = name.split("/", 1)[1] if name.startswith(bucket + "/") else name
        yield {**info, "_key": key}


# -- unchanged objects: the seal on an object's probe chunk ------------------------------------
#: Between a probe chunk's content hash and its seal, in ``e5_content_hash``.
SEAL_SEPARATOR = "~object:"
#: The position of the first record of a line- or row-numbered format (CSV: after the header).
_FIRST_POSITION = {".jsonl": 1, ".csv": 2, ".parquet": 1}


def object_seal(source: RemoteSourceFile, settings: Mapping[str, Any]) -> str:
    """What an object's rows depend on besides its bytes' content: the listing's
    fingerprint and the run's settings (model, recipe, chunk sizes, text and id fields),
    as a short digest; ``""`` when the listing gave no fingerprint."""
    if not source.fingerprint:
        return ""
    payload = json.dumps(
        [source.fingerprint, dict(settings)], sort_keys=True, default=str, separators=(",", ":")
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=12).hexdigest()


def probe_chunk_id(source: RemoteSourceFile) -> str | None:
    """The id of the chunk that carries the object's seal: chunk 0 of its first document,
    when that document's id follows from the URL (``url`` for a one-document object,
    ``url:N`` for the first line-numbered record); ``None`` for an unsupported extension."""
    from e5_integrations.ingest._chunking import chunk_id
    from e5_integrations.ingest._readers import READERS

    if source.suffix not in READERS:
        return None
    position = _FIRST_POSITION.get(source.suffix)
    document = source.file_id if position is None else f"{source.file_id}:{position}"
    return chunk_id(document, 0)


def id_follows_url(document_id: str, url: str) -> bool:
    """Whether a document id is the object's URL or a line/row-numbered id under it, so it
    is known without reading the object."""
    if document_id == url:
        return True
    head, sep, tail = document_id.rpartition(":")
    return bool(sep) and head == url and tail.isdigit()


def sealed_hash(content_hash: str, seal: str) -> str:
    """The content hash a probe chunk is stored with: its own, then the object's seal."""
    return f"{content_hash}{SEAL_SEPARATOR}{seal}"


def seal_matches(stored_hash: str | None, seal: str) -> bool:
    """Whether a probe chunk's stored hash carries ``seal``: the store holds every row of
    this version of the object, made with these settings."""
    return bool(seal) and stored_hash is not None and stored_hash.endswith(SEAL_SEPARATOR + seal)
