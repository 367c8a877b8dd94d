"""Typed loader errors; every message starts with the input's name and says what is wrong."""
from __future__ import annotations


class LoaderError(Exception):
    """A kernel or initrd image that pyrite cannot load."""


class ElfError(LoaderError):
    """A malformed or unsupported ELF image."""


class BzImageError(LoaderError):
    """A malformed or unsupported bzImage."""


class MultibootError(LoaderError):
    """A malformed or unsupported Multiboot image."""


class InitrdError(LoaderError):
    """An initrd that is empty or does not fit in guest memory."""


class DecompressError(LoaderError):
    """A compressed kernel payload that is corrupt or truncated."""


class UnknownCompressionError(DecompressError):
    """The payload's first bytes match no known compression format."""


class DecompressorMissingError(DecompressError):
    """The payload's format is known but its decompressor is not installed."""
