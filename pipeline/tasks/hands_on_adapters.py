"""Adapters for the hands-on commands: exec, sh, root_sh, dev, run_lab, cp, env_list, env_export (rows in table.py).

One subtask per selected deployment (``doit exec:demo -- python -V``).  They
run only when asked (never in the default run), always run (``uptodate:
False``), build nothing (a missing image is an error saying which build to
run) and do not take the run lock (``lock=False`` in their rows).
"""

from __future__ import annotations

import sys
from typing import Any

from pipeline.settings import LAB_PORT
from pipeline.tasks.context import Context

# -- actions ------------------------------------------------------------------------------------
# doit passes a task's pos_arg and params by name (cmd=[...], port=8888); never name a
# parameter task, targets, dependencies or changed: doit injects those.

def command_line(task_name: str, parsed: list[str] | None, argv: list[str] | None = None) -> list[str]:
    """The words after ``task_name`` on the command line, with their NAME=VALUE words.

    doit takes every word that contains ``=`` (and does not start with ``-``) as a
    variable, even after ``--``, and drops it from the positional arguments; so
    ``doit exec:demo -- pip install six==1.16.0`` would lose ``six==1.16.0``.  The
    words are taken back from ``sys.argv`` when they agree with what doit parsed.
    """
    words = list(parsed or [])
    argv = list(sys.argv[1:] if argv is None else argv)
    if task_name not in argv:
        return words
    rest = argv[argv.index(task_name) + 1:]
    if rest[:1] == ["--"] and words[:1] != ["--"]:
        rest = rest[1:]  # doit drops the `--` too
    if [w for w in rest if not (w[:1] != "-" and "=" in w)] != words:
        return words  # not the same command line (options in between, ...): keep doit's
    return rest


def exec_action(ctx: Context, name: str, cmd: list[str] | None = None) -> Any:
    from pipeline.stages.hands_on import exec_command
    return exec_command(ctx.settings, ctx.engine, name, command_line(f"exec:{name}", cmd))


def sh_action(ctx: Context, name: str) -> Any:
    from pipeline.stages.hands_on import shell
    return shell(ctx.settings, ctx.engine, name)


def root_sh_action(ctx: Context, name: str) -> Any:
    from pipeline.stages.hands_on import shell
    return shell(ctx.settings, ctx.engine, name, root=True)


def dev_action(ctx: Context, name: str, user: str = "") -> Any:
    from pipeline.stages.hands_on import dev_shell
    return dev_shell(ctx.settings, ctx.engine, name, user or None)


def run_lab_action(ctx: Context, name: str, host: str = "127.0.0.1", port: int = LAB_PORT) -> Any:
    from pipeline.stages.hands_on import run_lab
    return run_lab(ctx.settings, ctx.engine, name, host, port)


def cp_action(ctx: Context, name: str, paths: list[str] | None = None) -> Any:
    from pipeline.stages.environments import copy_out
    return copy_out(ctx.settings, ctx.engine, name, command_line(f"cp:{name}", paths))


def env_list_action(ctx: Context, name: str) -> Any:
    from pipeline.stages.environments import list_environments
    return list_environments(ctx.settings, ctx.engine, name)


def env_export_action(ctx: Context, name: str, env: list[str] | None = None, output: str = "") -> Any:
    from pipeline.stages.environments import export_environment
    return export_environment(ctx.settings, ctx.engine, name, env, output or None)
