"""Layer compression (oci/compress.py): the bytes depend on the data alone, and every reader reads them back."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from envbuild.errors import UsageError
from envbuild.oci.compress import (
    GZIP,
    GZIP_MEDIA_TYPE,
    ZSTD,
    ZSTD_MEDIA_TYPE,
    Compression,
    block_gzip,
    compression,
    detect,
    open_layer,
    zstd,
)
from envbuild.oci.imagefs import LayerReader
from envbuild.oci.layout import Descriptor, Layout
from envbuild.oci.tarnorm import normalize_layer
from support.tools import require_tool

BLOCK = 128 * 1024
COMPRESSIONS = [pytest.param(GZIP, id="gzip"), pytest.param(ZSTD, id="zstd")]


def mixed_data() -> bytes:
    """About 3 MB that compresses unevenly: random bytes, repetitive text, zeros, in blocks that straddle."""
    rng = random.Random(13)
    text = b"".join(b"%d torch/lib/libtorch_cuda.so %s\n" % (i, rng.randbytes(4).hex().encode()) for i in range(24_000))
    return rng.randbytes(1_000_003) + text + bytes(1_000_000) + rng.randbytes(77)


MIXED = mixed_data()


def compress(method: Compression, data: bytes, *, threads: int, piece: int = 1 << 20) -> bytes:
    """``data`` compressed by ``method`` on ``threads`` threads, written ``piece`` bytes at a time, flushed between."""
    out = io.BytesIO()
    with method.writer(out, threads=threads) as stream:
        for start in range(0, len(data), piece):
            stream.write(data[start : start + piece])
            stream.flush()
    assert not out.closed
    return out.getvalue()


@pytest.mark.parametrize("method", COMPRESSIONS)
@pytest.mark.parametrize("data", [MIXED, b"", b"x"], ids=["3MB-mixed", "empty", "one-byte"])
def test_the_bytes_do_not_depend_on_the_thread_count(method: Compression, data: bytes) -> None:
    """1, 2, 3 and 8 threads, and writes of any size with flush() between them, give the same bytes."""
    outputs = {compress(method, data, threads=n) for n in (1, 2, 3, 8)}
    outputs.add(compress(method, data, threads=2, piece=10_240))  # tarfile's stream mode writes 10 KiB pieces
    assert len(outputs) == 1
    assert open_layer(io.BytesIO(outputs.pop())).read() == data


def test_zstd_over_several_jobs_does_not_depend_on_the_worker_count() -> None:
    """18 MB: libzstd cuts jobs of 8 MiB at level 3, so the workers really share the frame."""
    data = MIXED * 6
    assert len({compress(ZSTD, data, threads=n) for n in (1, 2, 3, 8)}) == 1


@pytest.mark.parametrize("size", [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 1])
def test_gzip_blocks_on_their_boundaries(size: int) -> None:
    """Sizes at the block edges: one valid gzip member, the same on 1 or 3 threads."""
    data = MIXED[:size]
    packed = compress(GZIP, data, threads=1, piece=BLOCK)
    assert compress(GZIP, data, threads=3, piece=7_000) == packed
    assert gzip.decompress(packed) == data
    assert packed[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # mtime 0, no name, no machine's OS


def test_gzip_reads_back_with_pythons_gzip_and_the_gzip_cli() -> None:
    """Two independent decompressors agree with the input, and the trailer's CRC and size are checked."""
    packed = compress(GZIP, MIXED, threads=2)
    assert gzip.decompress(packed) == MIXED
    done = subprocess.run([require_tool("gzip"), "-dc"], input=packed, capture_output=True, check=True)
    assert done.stdout == MIXED


def test_zstd_reads_back_with_the_zstd_cli() -> None:
    """The zstd CLI checks the frame and its checksum."""
    packed = compress(ZSTD, MIXED, threads=2)
    assert zstandard.get_frame_parameters(packed).has_checksum
    assert zstandard.get_frame_parameters(packed).content_size == zstandard.CONTENTSIZE_UNKNOWN
    done = subprocess.run([require_tool("zstd"), "-dc"], input=packed, capture_output=True, check=True)
    assert done.stdout == MIXED


class _ReadOnly:
    """A stream with read() only (no peek, no seek), like a pipe."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_open_layer_tells_the_format_by_its_bytes(kind: str) -> None:
    """Plain, gzip and zstd, from a file and from a stream without peek, whatever the source's media type says."""
    data = MIXED[:300_000]
    packed = {"none": data, "gzip": compress(GZIP, data, threads=2), "zstd": compress(ZSTD, data, threads=2)}[kind]
    assert detect(packed[:4]) == kind
    assert open_layer(io.BufferedReader(io.BytesIO(packed))).read() == data
    assert open_layer(_ReadOnly(packed)).read() == data  # type: ignore[arg-type]


def test_a_failed_write_leaves_no_footer_and_no_threads_waiting() -> None:
    """An error inside the block ends the writer at once; the target stays open and unfinished."""
    out = io.BytesIO()
    with pytest.raises(RuntimeError), GZIP.writer(out, threads=2) as stream:
        stream.write(MIXED)
        raise RuntimeError("tar failed")
    assert not out.closed
    with pytest.raises(EOFError):
        gzip.decompress(out.getvalue())


def test_compression_by_name() -> None:
    """gzip and zstd by name; anything else is a usage error naming both."""
    assert compression("gzip") is GZIP and GZIP.media_type == GZIP_MEDIA_TYPE
    assert compression("zstd") is ZSTD and ZSTD.media_type == ZSTD_MEDIA_TYPE
    with pytest.raises(UsageError) as caught:
        compression("bzip2")
    said = f"{caught.value.message} {caught.value.hint}"
    assert "bzip2" in said and "gzip" in said and "zstd" in said
    with pytest.raises(UsageError):
        GZIP.writer(io.BytesIO(), threads=0)


def test_the_description_names_all_that_decides_the_bytes() -> None:
    """Level, block size and library version are in it: another would give other bytes, so another record."""
    assert GZIP.description == f"envbuild-pgzip/1 zlib {zlib.ZLIB_RUNTIME_VERSION} -6 128KiB"
    assert block_gzip(level=6, block_size=BLOCK) == GZIP
    others = {block_gzip(level=5).description, block_gzip(block_size=256 * 1024).description, GZIP.description}
    assert len(others) == 3
    libzstd = ".".join(map(str, zstandard.ZSTD_VERSION))
    assert ZSTD.description == f"envbuild-zstd/1 libzstd {libzstd} -3 multithreaded checksum"
    assert zstd(level=4).description != ZSTD.description


def _layer_source(where: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("opt/venv/lib/a.py", b"print(1)\n"), ("opt/venv/lib/b.bin", MIXED[:200_000])):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = where / "source.tar"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def blobs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "blobs"
    path.mkdir()
    yield path


def test_normalize_layer_writes_zstd_and_reads_a_zstd_source(tmp_path: Path, blobs: Path) -> None:
    """tarnorm compresses with what it is given, and a zstd source gives the same layer as a plain one."""
    source = _layer_source(tmp_path)
    as_gzip = normalize_layer(source, blobs, epoch=0, compressed=False)
    as_zstd = normalize_layer(source, blobs, epoch=0, compressed=False, compression=ZSTD, threads=3)
    assert as_gzip.diff_id == as_zstd.diff_id
    assert as_zstd.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert f"sha256:{hashlib.sha256(open_layer(as_zstd.path.open('rb')).read()).hexdigest()}" == as_zstd.diff_id
    packed = tmp_path / "source.tar.zst"
    packed.write_bytes(compress(ZSTD, source.read_bytes(), threads=1))
    assert normalize_layer(packed, blobs, epoch=0, compression=ZSTD, threads=1) == as_zstd


def test_imagefs_reads_a_zstd_layer(tmp_path: Path, blobs: Path) -> None:
    """A tar+zstd layer streams through LayerReader like a gzip one: same entries, same diff ID."""
    layout = Layout.create(tmp_path / "layout")
    layer = normalize_layer(_layer_source(tmp_path), blobs, epoch=0, compressed=False, compression=ZSTD)
    digest = layout.write_blob(layer.path.read_bytes())
    reader = LayerReader(layout, Descriptor(media_type=ZSTD.media_type, digest=digest, size=layer.size))
    names = [m.path for m in reader.members()]
    assert names == ["/opt/venv/lib/a.py", "/opt/venv/lib/b.bin"]
    assert reader.compression == "zstd" and reader.diff_id == layer.diff_id
