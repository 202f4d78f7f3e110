"""Layer compression on all cores whose bytes depend only on the data: block-parallel gzip, and zstd.

:data:`GZIP` is pigz's scheme: the tar is cut into fixed blocks, each deflated on its own
thread with the previous block's last 32 KiB as preset dictionary and ended on a byte
boundary (Z_SYNC_FLUSH), so the pieces concatenate into one valid deflate stream whatever
the number of threads. :data:`ZSTD` is libzstd's multi-threaded mode, whose frames do not
depend on the worker count. Each :class:`Compression` names in ``description`` everything
that decides its bytes; build records keep it as the "compressor".
"""

from __future__ import annotations

import abc
import contextlib
import gzip
import io
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

import zstandard

from envbuild.errors import UsageError

GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+zstd"
# Whatever a corrupt or truncated layer stream raises while it is read through open_layer.
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error, zstandard.ZstdError)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_WINDOW = 32 * 1024  # deflate's history: the most a back-reference can reach
# Magic, deflate, no flags, mtime 0, XFL 0, OS 255 ("unknown"): nothing of the machine or the time.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class Writable(Protocol):
    """What a layer writer writes into, and what :meth:`Compression.writer` gives back."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Compression(abc.ABC):
    """A way to compress layers: its OCI media type and, in ``description``, all that decides its bytes."""

    name: str
    media_type: str
    description: str

    def writer(self, target: Writable, *, threads: int | None = None) -> contextlib.AbstractContextManager[Writable]:
        """A file-like object that compresses what is written to it into ``target`` (a file, or any writer).

        On a clean exit the stream is finished (its footer written); ``target`` is never closed.
        ``threads`` (default: every core this process may use) changes the speed, never the
        bytes; ``flush()`` does not cut the stream either, so the bytes depend on the data alone.
        """
        return self._open(target, _thread_count(threads))

    @abc.abstractmethod
    def _open(self, target: Writable, threads: int) -> contextlib.AbstractContextManager[Writable]: ...


@dataclass(frozen=True, kw_only=True)
class BlockGzip(Compression):
    """Gzip made of independently deflated blocks (pigz's scheme), deterministic on any number of threads."""

    level: int
    block_size: int

    @contextlib.contextmanager
    def _open(self, target: Writable, threads: int) -> Iterator[Writable]:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="envbuild-gzip") as pool:
            stream = _BlockGzipWriter(target, pool, level=self.level, block_size=self.block_size, threads=threads)
            try:
                yield stream
                stream.finish()
            finally:
                stream.abandon()


@dataclass(frozen=True, kw_only=True)
class Zstd(Compression):
    """Zstandard frames from libzstd's multi-threaded mode, with a checksum and no content size."""

    level: int

    @contextlib.contextmanager
    def _open(self, target: Writable, threads: int) -> Iterator[Writable]:
        # Always nbWorkers >= 1 (threads=0 would be single-threaded mode, whose frames differ).
        # Multi-threaded output is the same for any worker count: zstd's maintainers in
        # facebook/zstd#2238 and #3608 ("the multi-threaded output produces the same compressed
        # data no matter how many threads"); the one exception, a first call with ZSTD_e_end
        # (facebook/zstd#2327, "the feature supported is that *streaming* multithreaded zstd does
        # not depend on nb of threads"), cannot happen for data here: stream_writer.write() passes
        # ZSTD_e_continue. tests/unit/oci/test_compress.py checks 1, 2, 3 and 8 workers.
        compressor = zstandard.ZstdCompressor(
            level=self.level, write_checksum=True, write_content_size=False, threads=threads
        )
        stream: Any = compressor.stream_writer(cast(Any, target), closefd=False, write_return_read=True)
        yield _ZstdWriter(stream)
        stream.close()  # FLUSH_FRAME: the last block and the checksum; closefd=False keeps target open


class _ZstdWriter:
    """The zstd stream without its flush(): ZSTD_e_flush would end a job early, and the bytes would follow the calls."""

    def __init__(self, stream: zstandard.ZstdCompressionWriter):
        self._stream = stream

    def write(self, data: bytes, /) -> int:
        return self._stream.write(data)

    def flush(self) -> None:
        pass


class _BlockGzipWriter:
    """Cuts the stream into blocks at fixed offsets, deflates them on the pool and writes them in order.

    At most ``2 * threads`` blocks are in flight, so memory stays bounded whatever the
    layer's size. The CRC-32 runs here, on the main thread: zlib releases the GIL for it
    and it runs at GB/s where deflate at level 6 runs at tens of MB/s.
    """

    def __init__(self, target: Writable, pool: ThreadPoolExecutor, *, level: int, block_size: int, threads: int):
        self._target = target
        self._pool = pool
        self._level = level
        self._block_size = block_size
        self._max_in_flight = 2 * threads
        self._in_flight: deque[Future[bytes]] = deque()
        self._pending = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        target.write(_GZIP_HEADER)

    def write(self, data: bytes, /) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._pending += data
        # Strictly more than a block: the last block, whatever its size, is the one that gets Z_FINISH.
        while len(self._pending) > self._block_size:
            block = bytes(self._pending[: self._block_size])
            del self._pending[: self._block_size]
            self._submit(block, last=False)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        """Deflate what is left as the final block, write every block, then CRC-32 and size (mod 2**32)."""
        self._submit(bytes(self._pending), last=True)
        self._pending.clear()
        while self._in_flight:
            self._target.write(self._in_flight.popleft().result())
        self._target.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))

    def abandon(self) -> None:
        """Drop the blocks not yet written (after a failure, so that the pool shuts down at once)."""
        while self._in_flight:
            self._in_flight.popleft().cancel()

    def _submit(self, block: bytes, *, last: bool) -> None:
        if len(self._in_flight) >= self._max_in_flight:
            self._target.write(self._in_flight.popleft().result())
        self._in_flight.append(self._pool.submit(_deflate_block, block, self._dictionary, self._level, last))
        self._dictionary = block[-_WINDOW:]


def _deflate_block(block: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    """One block as raw deflate, primed with the data before it; ends byte-aligned, or the stream if ``last``."""
    options = {"zdict": dictionary} if dictionary else {}
    deflate = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, **options)
    return deflate.compress(block) + deflate.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def block_gzip(*, level: int = 6, block_size: int = 128 * 1024) -> BlockGzip:
    """The block-parallel gzip at ``level`` with blocks of ``block_size`` bytes (at least 32 KiB)."""
    if block_size < _WINDOW or block_size % 1024:
        raise ValueError(f"block size {block_size}: a multiple of 1 KiB, at least 32 KiB")
    # The zlib that runs decides the bytes, not the headers Python was built with.
    description = f"envbuild-pgzip/1 zlib {zlib.ZLIB_RUNTIME_VERSION} -{level} {block_size // 1024}KiB"
    return BlockGzip(
        name="gzip", media_type=GZIP_MEDIA_TYPE, description=description, level=level, block_size=block_size
    )


def zstd(*, level: int = 3) -> Zstd:
    """zstd at ``level``, multi-threaded, with the libzstd bundled in the pinned zstandard package."""
    libzstd = ".".join(map(str, zstandard.ZSTD_VERSION))
    description = f"envbuild-zstd/1 libzstd {libzstd} -{level} multithreaded checksum"
    return Zstd(name="zstd", media_type=ZSTD_MEDIA_TYPE, description=description, level=level)


GZIP: Compression = block_gzip()
ZSTD: Compression = zstd()
_BY_NAME = {c.name: c for c in (GZIP, ZSTD)}


def compression(name: str) -> Compression:
    """The compression called ``name`` (gzip or zstd)."""
    found = _BY_NAME.get(name)
    if found is None:
        choices = " or ".join(sorted(_BY_NAME))
        raise UsageError(
            f"unknown layer compression {name!r}",
            hint=f"choose {choices} (zstd needs a runtime that reads tar+zstd layers)",
        )
    return found


def detect(head: bytes) -> str:
    """The compression of a layer stream that starts with ``head``: "gzip", "zstd" or "none" (plain tar)."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


def open_layer(fileobj: BinaryIO) -> BinaryIO:
    """A reader of the uncompressed tar in ``fileobj``, a plain, gzip or zstd stream.

    The bytes decide, not a media type: registries and tools mislabel layers. Closing the
    reader leaves ``fileobj`` open.
    """
    head, source = _head(fileobj, len(_ZSTD_MAGIC))
    kind = detect(head)
    if kind == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=source, mode="rb"))
    if kind == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=False)
    return source


def _head(fileobj: BinaryIO, size: int) -> tuple[bytes, BinaryIO]:
    """The first ``size`` bytes of ``fileobj``, and a stream that still starts with them."""
    peek = getattr(fileobj, "peek", None)
    if peek is not None:
        head = peek(size)[:size]
        if len(head) == size:
            return head, fileobj
    head = fileobj.read(size)
    return head, cast(BinaryIO, io.BufferedReader(_Prefixed(head, fileobj), buffer_size=1 << 20))


class _Prefixed(io.RawIOBase):
    """``prefix`` and then the rest of ``rest``: puts back what was read to tell the format."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            count = min(len(self._prefix), len(view))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def _thread_count(threads: int | None) -> int:
    if threads is None:
        return len(os.sched_getaffinity(0))
    if threads < 1:
        raise UsageError(f"{threads} compression threads", hint="give at least 1 (or leave it unset for all cores)")
    return threads
