"""doit entry point: DOIT_CONFIG and one task_* creator per row of the stage table.

Every task is one row of pipeline/tasks/table.py: its name, its one-line doc, what it
runs after, its check and action, and whether it is in the default run, image_all and
the graph, takes the run lock and is quiet.  `doit list` prints them; `doit help TASK`
the options of one.
"""

from pipeline.reporter import PipelineReporter
from pipeline.tasks.table import STAGES, default_tasks

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": ".doit.db",
    "reporter": PipelineReporter,
    "verbosity": 2,
    # The rows with default=True; never `freeze`: plain `doit` leaves the tracked tree as it found it.
    "default_tasks": default_tasks(),
}

# task_certs, task_root, task_chain, ... in the table's order.
globals().update({f"task_{stage.name}": stage.creator() for stage in STAGES})
