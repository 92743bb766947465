"""The history view's instruction column: what the Engine API's CreatedBy becomes (one row per case)."""
from __future__ import annotations

import pytest

from pipeline.stages.history import WIDTH, instruction

HASH = "6a8f3cbd1e5b2a47c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7"
LONG_RUN = "echo " + "-".join(["long-instruction"] * 8) + " end > /long"

CASES = [
    # (CreatedBy, expected row)
    (f"/bin/sh -c #(nop) COPY file:{HASH} in /app.txt ", f"COPY file:{HASH[:12]}… in /app.txt"),
    (f"/bin/sh -c #(nop) ADD dir:{HASH} in /opt/environments/ ", f"ADD dir:{HASH[:12]}… in /opt/environments/"),
    (f"/bin/sh -c #(nop) COPY multi:{HASH} in /opt/a-long/destination/directory/ ",
     f"COPY multi:{HASH[:12]}… in /opt/a-long/destination/directory/"),
    ("/bin/sh -c #(nop) COPY " + " ".join(f"src/file{i}.txt" for i in range(12)) + " /opt/dest/ ",
     None),  # checked below: command and destination kept
    ("/bin/sh -c #(nop)  CMD [\"sh\"]", 'CMD ["sh"]'),
    ("/bin/sh -c echo alpha > /name", "RUN echo alpha > /name"),
    ("|1 BASE_IMAGE=x /bin/sh -c echo hi", "RUN echo hi"),
    ("RUN /bin/sh -c echo kit # buildkit", "RUN echo kit"),
    (f"/bin/sh -c {LONG_RUN}", ("RUN " + LONG_RUN)[: WIDTH - 1] + "…"),
    ("", "(no instruction recorded)"),
]


@pytest.mark.parametrize(("created_by", "expected"), CASES)
def test_instruction_row(created_by: str, expected: str | None) -> None:
    row = instruction({"CreatedBy": created_by})
    assert len(row) <= WIDTH, row
    if expected is not None:
        assert row == expected
    else:
        assert row.startswith("COPY src/file0.txt") and row.endswith("… /opt/dest/"), row


def test_copy_with_many_sources_keeps_command_and_destination() -> None:
    sources = " ".join(f"file:{HASH}" for _ in range(4))
    row = instruction({"CreatedBy": f"/bin/sh -c #(nop) COPY {sources} in /srv/app/ "})
    assert row.startswith(f"COPY file:{HASH[:12]}…") and row.endswith("… in /srv/app/"), row
    assert len(row) <= WIDTH


def test_full_keeps_every_character() -> None:
    created = f"/bin/sh -c #(nop) COPY file:{HASH} in /app.txt "
    assert instruction({"CreatedBy": created}, full=True) == f"COPY file:{HASH} in /app.txt"
