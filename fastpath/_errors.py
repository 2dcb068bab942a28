"""The one exception class shared by the compiled modules and their Python twins."""


class CorruptBatch(ValueError):
    """A record batch failed its integrity checks (magic, version, lengths, CRC-32C, UTF-8)."""
