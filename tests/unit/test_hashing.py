"""The file-hash cache: trusted only on a full stat match outside the racy window; safe across threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from pipeline import hashing
from pipeline.hashing import FileHasher


def test_same_size_rewrite_with_mtime_restored_is_rehashed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("aaaa")
    old = time.time_ns() - 10 * hashing.RACY_NS
    os.utime(path, ns=(old, old))
    cache = tmp_path / "cache.json"
    first = FileHasher(cache)
    before = first.digest(path)
    first.save()
    path.write_text("bbbb")
    os.utime(path, ns=(old, old))  # size and mtime as before; ctime moves
    assert FileHasher(cache).digest(path) != before


def test_a_hash_taken_within_the_racy_window_is_not_trusted(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f"
    path.write_text("aaaa")
    hasher = FileHasher(None)
    hasher.digest(path)
    reads = []
    real_open = Path.open

    def counting_open(self: Path, *args, **kwargs):
        reads.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    hasher.digest(path)  # mtime is "now": the record could hide a same-tick rewrite
    assert reads == [path]
    old = time.time_ns() - 10 * hashing.RACY_NS
    os.utime(path, ns=(old, old))
    hasher.digest(path)
    hasher.digest(path)
    assert reads == [path, path]  # hashed once more after the utime, then trusted


def test_threads_hash_and_save_at_once(tmp_path: Path) -> None:
    files = []
    for i in range(300):
        path = tmp_path / f"f{i}"
        path.write_text(str(i))
        files.append(path)
    hasher = FileHasher(tmp_path / "cache.json")
    errors: list[BaseException] = []

    def hash_all() -> None:
        try:
            for path in files:
                hasher.digest(path)
                hasher.save()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hash_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
