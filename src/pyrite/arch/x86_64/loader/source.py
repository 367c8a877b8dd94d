"""Open a kernel or initrd given as a path or as bytes, without copying a file into the heap."""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import LoaderError

ImageSource = str | os.PathLike | bytes | bytearray | memoryview


def image_name(source: ImageSource, name: str | None, default: str) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or default
    return default


@contextmanager
def open_image(source: ImageSource, name: str, error: type[LoaderError]) -> Iterator[memoryview]:
    """Yield a read-only memoryview of the image (an mmap for files); empty input is an error."""
    if not isinstance(source, (str, os.PathLike)):
        view = memoryview(source).cast("B")
        if not len(view):
            raise error(f"{name}: empty file")
        yield view
        return
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise error(f"{name}: empty file")
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise error(f"{name}: cannot read {path}: {e.strerror or e}") from e
    view = memoryview(mapped)
    try:
        yield view
    finally:
        view.release()
        try:
            mapped.close()
        except BufferError:
            pass  # a caller still holds a slice; the mapping goes when it does
