"""Generated files: atomic, unchanged content not rewritten, and the usual mode (it is part of input keys)."""

from __future__ import annotations

import stat
from pathlib import Path

from pipeline.files import GENERATED_MODE, write_bytes, write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_files_get_the_usual_mode_not_mkstemps(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bundle.pem"
    assert write_bytes(path, b"a") is True
    assert mode(path) == GENERATED_MODE and GENERATED_MODE & 0o044  # readable by others: not mkstemp's 0600
    assert write_text(path, "a") is False  # same bytes, same mode: nothing written
    path.chmod(0o600)  # left by an older version
    assert write_bytes(path, b"a") is True and mode(path) == GENERATED_MODE
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
