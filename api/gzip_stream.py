"""gzip for SSE streams without a compressor per client.

A menu snapshot is ~80 KB of JSON and ~7 KB gzipped; a storm of 20,000 clients starting from it is 1.6 GB
plain. Compressing each client's stream with its own zlib compressor would cost ~256 KB of memory per client and
compress every change once per client. Instead, every piece of a stream (a snapshot, a batch of changes, a
heartbeat) is compressed on its own, with an empty window, and ended with a sync flush: such pieces can be
concatenated in any order into one valid deflate stream, so the feed compresses each batch once and writes the
same bytes to every gzip client. Each client keeps only the CRC-32 and length its gzip trailer needs.
"""

import functools
import struct
import zlib

# RFC 1952: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
LEVEL = 6


SHORT_PIECE = 256  # a heartbeat, a reconnect event: the same few bytes again and again


def deflate_piece(data: bytes) -> bytes:
    """`data` as raw deflate blocks that need nothing before them and end on a byte boundary (not final).

    Setting up a compressor costs ~100 us whatever the size: a heartbeat to 20,000 gzip clients every 10 s paid it
    2,000 times a second. Short pieces repeat, so each is compressed once per process."""
    return _deflate_short(data) if len(data) <= SHORT_PIECE else _deflate(data)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@functools.lru_cache(maxsize=256)
def _deflate_short(data: bytes) -> bytes:
    return _deflate(data)


@functools.cache
def _final_block() -> bytes:
    """An empty final deflate block: what closes the stream of pieces."""
    return zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)


class GzipFraming:
    """One client's gzip stream: the header once, then pieces (each possibly compressed once for everybody),
    then, if the stream ends in order, the final block and the trailer."""

    __slots__ = ("crc", "size")

    def __init__(self) -> None:
        self.crc = 0
        self.size = 0

    def piece(self, data: bytes, deflated: bytes | None = None) -> bytes:
        """The bytes that carry `data` in this stream; `deflated` is `deflate_piece(data)` when already made."""
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        return deflated if deflated is not None else deflate_piece(data)

    def end(self) -> bytes:
        return _final_block() + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF)
