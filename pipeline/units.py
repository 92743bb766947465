"""Human-readable quantities."""

from __future__ import annotations


def human_size(size: float) -> str:
    """Bytes as B, kB, MB, GB, TB (powers of 1000, one decimal above bytes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
