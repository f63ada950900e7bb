"""Channel scaling shared by the model definitions."""


def scaled(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least one channel)."""
    return max(1, int(round(channels * width)))
