"""The stream linker's rules, on tars made with Python's tarfile (no daemon).

The rules are crosslink's: a file is linked to an earlier one only when size, content,
owner, mode and extended attributes are all equal; symlinks, empty files and files
outside the roots are never touched; existing hard links are kept.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.tarstream import Relinker, Roots, StreamError, count_sizes

DATA = b"the same bytes\n" * 30


def make_tar(*members: tuple[str, bytes | None, dict]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, given in members:
            extra = dict(given)  # the rows are shared between parametrized runs: never pop from them
            info = tarfile.TarInfo(name)
            info.mode = extra.pop("mode", 0o644)
            for key, value in extra.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def f(name: str, data: bytes = DATA, **extra: object) -> tuple[str, bytes, dict]:
    return (name, data, dict(extra))


def other(name: str, kind: bytes, **extra: object) -> tuple[str, None, dict]:
    return (name, None, {"type": kind, **extra})


def run(data: bytes, roots: tuple[str, ...] = ("/opt",), chunk: int = 700, **kw: object) -> tuple[Relinker, bytes]:
    relinker = Relinker([data[i:i + chunk] for i in range(0, len(data), chunk)], roots, **kw)  # type: ignore[arg-type]
    out = b"".join(relinker.stream())
    assert relinker.sent_sha256 == "sha256:" + hashlib.sha256(out).hexdigest()
    return relinker, out


def members(out: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        return {m.name: m for m in tar.getmembers()}


def contents(out: bytes) -> dict[str, bytes]:
    """Every regular path's content, hard links resolved (what an extraction would give)."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        for m in tar:
            if m.isreg():
                found[m.name] = tar.extractfile(m).read()
            elif m.islnk():
                found[m.name] = found[m.linkname]
    return found


def linked(out: bytes) -> dict[str, str]:
    return {n: m.linkname for n, m in members(out).items() if m.islnk()}


# one row per rule: the tree, and the links expected (name -> target)
CASES: list[tuple[str, list, dict[str, str]]] = [
    ("equal files are linked to the first", [f("opt/a"), f("opt/b"), f("opt/s/c")], {"opt/b": "opt/a", "opt/s/c": "opt/a"}),
    ("same size, other content", [f("opt/a"), f("opt/b", b"X" * len(DATA))], {}),
    ("other mode", [f("opt/a"), f("opt/b", mode=0o755)], {}),
    ("other owner", [f("opt/a"), f("opt/b", uid=1000)], {}),
    ("other group", [f("opt/a"), f("opt/b", gid=1000)], {}),
    ("other xattrs", [f("opt/a"), f("opt/b", pax_headers={"SCHILY.xattr.user.tag": "1"}), f("opt/c")],
     {"opt/c": "opt/a"}),
    ("equal xattrs", [f("opt/a", pax_headers={"SCHILY.xattr.user.tag": "1"}),
                      f("opt/b", pax_headers={"SCHILY.xattr.user.tag": "1"})], {"opt/b": "opt/a"}),
    ("empty files", [f("opt/a", b""), f("opt/b", b"")], {}),
    ("outside the roots", [f("opt/a"), f("usr/b")], {}),
    ("symlinks untouched", [f("opt/a"), other("opt/l", tarfile.SYMTYPE, linkname="a")], {}),
    ("existing hard links kept", [f("opt/a"), other("opt/a2", tarfile.LNKTYPE, linkname="opt/a"), f("opt/b")],
     {"opt/a2": "opt/a", "opt/b": "opt/a"}),
    ("long names", [f("opt/" + "d" * 120 + "/a"), f("opt/" + "e" * 130 + "/b")],
     {"opt/" + "e" * 130 + "/b": "opt/" + "d" * 120 + "/a"}),
]


def census_of(source: bytes, where: Path, roots: tuple[str, ...] = ("/opt",)) -> dict[int, int] | None:
    """The census the stages take from layer directories, here from the tree extracted to ``where``."""
    with tarfile.open(fileobj=io.BytesIO(source)) as tar:
        tar.extractall(where, filter="fully_trusted")
    return count_sizes([str(where)], Roots(roots))


@pytest.mark.parametrize("mode", ["eager", "lookback", "census"])
@pytest.mark.parametrize(("tree", "links"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_linking_rules(tree: list, links: dict[str, str], mode: str, tmp_path: Path) -> None:
    source = make_tar(*tree)
    kw: dict[str, object] = {"lookback": 1 << 20} if mode == "lookback" else {}
    if mode == "census":
        kw["census"] = census_of(source, tmp_path)
    relinker, out = run(source, **kw)
    assert linked(out) == links
    assert contents(out) == contents(source)
    before, after = members(source), members(out)
    assert before.keys() == after.keys()
    for name, m in before.items():
        if not m.islnk() and name not in links:
            assert (m.type, m.mode, m.uid, m.gid, m.size, m.linkname, m.pax_headers) == \
                   (after[name].type, after[name].mode, after[name].uid, after[name].gid, after[name].size,
                    after[name].linkname, after[name].pax_headers)
        if name in links:  # a link member carries its target's mode, owner and mtime
            target = after[links[name]]
            assert (after[name].mode, after[name].uid, after[name].mtime) == (target.mode, target.uid, target.mtime)
    new = [n for n in links if not before[n].islnk()]
    assert relinker.counts.files_linked == len(new)
    assert relinker.counts.bytes_saved == sum(before[n].size for n in new)


def test_globs_match_one_component_each() -> None:
    tree = [f("usr/lib/python3.11/site-packages/a"), f("usr/lib/python3.12/site-packages/b"),
            f("usr/lib/python3.11/other/c")]
    _, out = run(make_tar(*tree), ("/usr/lib/python3*/site-packages",))
    assert linked(out) == {"usr/lib/python3.12/site-packages/b": "usr/lib/python3.11/site-packages/a"}


def test_unique_sizes_are_never_spooled_and_only_candidates_are_hashed() -> None:
    tree = [f(f"opt/u{i}", b"x" * (i + 1)) for i in range(20)] + [f("opt/d1", b"y" * 100), f("opt/d2", b"z" * 100)]
    tree.append(f("usr/big", b"q" * 5000))
    relinker, _ = run(make_tar(*tree))
    assert relinker.counts.spooled == 1  # only d2: its size was seen before
    assert relinker.counts.hashed_bytes == sum(range(1, 21)) + 200  # usr/ is outside the roots
    assert relinker.peak_spool == 512


@pytest.mark.parametrize("size_delta", [0, 1], ids=["at-the-bound", "above-the-bound"])
def test_a_file_at_the_spool_bound(size_delta: int) -> None:
    bound = 4096
    data = b"b" * (bound + size_delta)
    source = make_tar(f("opt/a", data), f("opt/b", data))
    relinker, out = run(source, spool_bound=bound)
    assert contents(out) == contents(source)
    assert linked(out) == ({"opt/b": "opt/a"} if size_delta == 0 else {})  # above it: copied, unlinked
    assert relinker.peak_spool <= bound


def test_above_the_bound_a_reread_decides() -> None:
    data = {"/opt/a": b"c" * 10_000, "/opt/b": b"c" * 10_000, "/opt/c": b"d" * 10_000}
    asked: list[str] = []

    def reread(path: str) -> bytes:  # what the engine's archive endpoint would give
        asked.append(path)
        return hashlib.sha256(data[path]).digest()

    source = make_tar(*(f(path[1:], body) for path, body in data.items()))
    relinker, out = run(source, spool_bound=1000, reread=reread)
    assert linked(out) == {"opt/b": "opt/a"}
    assert asked == ["/opt/b", "/opt/c"]
    assert contents(out) == contents(source)
    assert relinker.peak_spool == 0


def test_a_reread_that_disagrees_with_the_stream_aborts() -> None:
    source = make_tar(f("opt/a", b"c" * 10_000), f("opt/b", b"e" * 10_000))
    with pytest.raises(StreamError, match="other bytes"):
        run(source, spool_bound=1000, reread=lambda path: hashlib.sha256(b"c" * 10_000).digest())


def _truncate(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _no_end(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    return data[:last.offset_data + -(-last.size // 512) * 512]  # every member whole, no end marker


def _bad_checksum(data: bytes) -> bytes:
    return data[:1] + b"Z" + data[2:]


@pytest.mark.parametrize(("damage", "needle"), [
    (_truncate, "truncated"), (_no_end, "end-of-archive"), (_bad_checksum, "checksum"),
], ids=["truncated", "no-end-marker", "bad-checksum"])
def test_damaged_streams_raise(damage: Callable[[bytes], bytes], needle: str) -> None:
    source = make_tar(f("opt/a", b"1" * 3000), f("opt/b", b"2" * 3000))
    with pytest.raises(StreamError, match=needle):
        run(damage(source))


def test_lookback_hashes_only_sizes_that_recur_and_links_within_reach() -> None:
    tree = [f(f"opt/u{i}", b"x" * (1000 + i)) for i in range(50)]
    tree += [f("opt/d1", DATA), f("opt/d2", DATA), f("opt/d3", DATA)]
    relinker, out = run(make_tar(*tree), lookback=1 << 20)
    assert linked(out) == {"opt/d2": "opt/d1", "opt/d3": "opt/d1"}
    assert relinker.counts.hashed_bytes == 3 * len(DATA)  # d1 lazily, from the bytes kept, then d2 and d3
    assert relinker.counts.out_of_reach == 0


def test_lookback_never_links_to_a_copy_whose_bytes_are_gone() -> None:
    filler = [f(f"opt/fill{i}", bytes([i]) * (80_000 + i)) for i in range(30)]  # 2.4 MB between the copies
    source = make_tar(f("opt/a"), *filler, f("opt/b"), f("opt/c"))
    relinker, out = run(source, chunk=65536, lookback=16 << 10)
    assert linked(out) == {"opt/c": "opt/b"}  # a had left the bytes kept (16 kB + one 1 MiB chunk) when b came
    assert relinker.counts.out_of_reach == 1
    assert contents(out) == contents(source)
    _, out = run(source, chunk=65536)
    assert linked(out) == {"opt/b": "opt/a", "opt/c": "opt/a"}


def test_listing_ignores_links_made_and_changes_with_content() -> None:
    one = run(make_tar(f("opt/a"), f("opt/b")))[0]
    unlinked = run(make_tar(f("opt/a"), f("opt/b")), link=False)[0]
    other_tree = run(make_tar(f("opt/a"), f("opt/b", b"Y" * len(DATA))))[0]
    assert one.listing_sha256 == unlinked.listing_sha256 != other_tree.listing_sha256
    assert unlinked.counts.files_linked == 0


def test_a_census_hashes_only_the_sizes_that_recur(tmp_path: Path) -> None:
    tree = [f(f"opt/u{i}", b"x" * (1000 + i)) for i in range(50)]
    tree += [f("opt/d1", DATA), f(f"opt/{'z' * 10}/d2", DATA), f("usr/d3", DATA)]
    source = make_tar(*tree)
    relinker, out = run(source, census=census_of(source, tmp_path))
    assert linked(out) == {f"opt/{'z' * 10}/d2": "opt/d1"}
    assert relinker.counts.hashed_bytes == 2 * len(DATA)  # only the two candidates of a size that recurs
    assert relinker.counts.unhashed == 50
    assert contents(out) == contents(source)


def test_a_census_that_counts_too_few_costs_links_never_correctness() -> None:
    source = make_tar(f("opt/a"), f("opt/b"), f("opt/c", b"other" * 90), f("opt/d"))
    relinker, out = run(source, census={})  # claims every size is unique
    assert linked(out) == {"opt/d": "opt/b"}  # a was not hashed: b is the first copy anyone can link to
    assert contents(out) == contents(source)


def test_the_census_counts_every_layer_so_it_never_counts_too_few(tmp_path: Path) -> None:
    """Like overlay2's layer directories: a file overwritten in an upper layer is counted in both."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for layer, text in ((lower, b"v1" * 500), (upper, b"v2" * 500)):
        (layer / "opt" / "pkg").mkdir(parents=True)
        (layer / "opt" / "pkg" / "mod.py").write_bytes(text)
    (lower / "opt" / "pkg" / "empty").write_bytes(b"")
    (lower / "usr").mkdir()
    (lower / "usr" / "outside").write_bytes(b"v1" * 500)
    (upper / "opt" / "link").symlink_to("pkg/mod.py")
    assert count_sizes([str(lower), str(upper)], Roots(("/opt",))) == {1000: 2}
    assert count_sizes([str(tmp_path / "missing")], Roots(("/opt",))) is None
