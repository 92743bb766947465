"""Pinned-spec diffs (freeze) and the parsers of the manifest and history views: no daemon needed."""

from __future__ import annotations

from pipeline.stages.freeze import Pin, diff_requirements, parse_requirements
from pipeline.stages.history import human_size, instruction, layers_of
from pipeline.stages.manifest import (
    parse_dist_infos,
    parse_dpkg_status,
    parse_os_release,
)

OLD = """\
# pip freeze of env main
Foo_Bar==1.0
requests==2.31.0
six==1.16.0
-e git+https://example.invalid/x.git#egg=local
--index-url https://pypi.example.invalid/simple

"""
NEW = """\
foo-bar==1.1
Requests==2.31.0   # same pin, other spelling
urllib3==2.2.1
"""


def test_parse_skips_comments_blanks_and_options() -> None:
    pins = parse_requirements(OLD)
    assert pins == {"foo-bar": Pin("Foo_Bar", "1.0"), "requests": Pin("requests", "2.31.0"), "six": Pin("six", "1.16.0")}


def test_parse_keeps_direct_references_and_ranges() -> None:
    pins = parse_requirements("pkg @ https://example.invalid/pkg-1.0.whl\nloose>=1,<2\nplain\n")
    assert pins["pkg"].version == "@ https://example.invalid/pkg-1.0.whl"
    assert pins["loose"].version in ("<2,>=1", ">=1,<2")
    assert pins["plain"].version == ""


def test_parse_joins_continuation_lines_and_skips_invalid_lines() -> None:
    pins = parse_requirements("alpha==1.0 \\\n    ; python_version > '3'\nthis is not a requirement\n")
    assert pins == {"alpha": Pin("alpha", "1.0")}


def test_diff_added_removed_changed_with_canonical_names() -> None:
    diff = diff_requirements(OLD, NEW)
    assert diff.added == (Pin("urllib3", "2.2.1"),)
    assert diff.removed == (Pin("six", "1.16.0"),)
    assert diff.changed == (("foo-bar", "1.0", "1.1"),)
    assert diff.summary() == "1 added, 1 removed, 1 changed"
    assert diff.lines() == ["+ urllib3 2.2.1", "- six 1.16.0", "~ foo-bar 1.0 -> 1.1"]


def test_diff_of_equal_pins_is_empty() -> None:
    diff = diff_requirements("a==1\nB==2\n", "# reordered\nb==2\na==1\n")
    assert not diff
    assert diff.summary() == "no changes"
    assert diff.lines() == []


def test_diff_from_and_to_nothing() -> None:
    assert diff_requirements("", "a==1\n").added == (Pin("a", "1"),)
    assert diff_requirements("a==1\n", "").removed == (Pin("a", "1"),)


def test_dpkg_status_lists_only_installed_packages() -> None:
    status = (
        "Package: libfoo1\nStatus: install ok installed\nVersion: 1.2-3\nDescription: foo\n multi-line\n\n"
        "Package: removed-pkg\nStatus: deinstall ok config-files\nVersion: 9\n\n"
        "Package: held\nStatus: hold ok installed\nVersion: 2:0.1\n"
    )
    assert parse_dpkg_status(status) == {"held": "2:0.1", "libfoo1": "1.2-3"}


def test_os_release_values_are_unquoted() -> None:
    text = 'NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n# comment\nPRETTY_NAME=\'It\\\'s\'\n'
    assert parse_os_release(text) == {"NAME": "Debian GNU/Linux", "VERSION_ID": "12", "ID": "debian",
                                      "PRETTY_NAME": "It's"}


def test_dist_infos_grouped_by_environment_prefix() -> None:
    paths = [
        "/opt/envs/x/lib/python3.11/site-packages/Foo_Bar-1.2.3.dist-info",
        "/opt/envs/x/lib/python3.11/site-packages/pip-24.0.dist-info",
        "/usr/lib/python3/dist-packages/six-1.16.0.dist-info",
        "/opt/envs/x/lib/python3.11/site-packages/setuptools/_vendor/packaging-24.dist-info",
        "/somewhere/else/odd-1.0.dist-info",
    ]
    assert parse_dist_infos(paths) == {
        "/opt/envs/x": {"foo-bar": "1.2.3", "pip": "24.0"},
        "/usr": {"six": "1.16.0"},
    }


def test_human_sizes() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1_234_567, 5_600_000_000)] == ["0 B", "999 B", "1.0 kB",
                                                                               "1.2 MB", "5.6 GB"]


def test_history_rows_cumulative_from_the_oldest_and_largest_marked() -> None:
    entries = [{"CreatedBy": f"/bin/sh -c echo {i}", "Size": size} for i, size in enumerate([10, 0, 60, 50, 40, 30, 20])]
    layers = layers_of(entries)
    assert [layer.cumulative for layer in layers] == [210, 200, 200, 140, 90, 50, 20]
    assert [layer.largest for layer in layers] == [False, False, True, True, True, True, True]
    assert layers[0].instruction == "RUN echo 0"


def test_instruction_strips_nop_and_shortens_unless_full() -> None:
    long_run = {"CreatedBy": "|1 USE_FROZEN=0 /bin/sh -c " + "echo " + "x" * 200}
    assert instruction({"CreatedBy": "/bin/sh -c #(nop)  LABEL a=b"}) == "LABEL a=b"
    short = instruction(long_run)
    assert len(short) == 70 and short.startswith("RUN echo xxx") and short.endswith("…")
    assert instruction(long_run, full=True) == "RUN echo " + "x" * 200
    assert instruction({"CreatedBy": "RUN /bin/sh -c make # buildkit"}) == "RUN make"
    assert instruction({"CreatedBy": "", "Comment": "Imported from -"}) == "Imported from -"
