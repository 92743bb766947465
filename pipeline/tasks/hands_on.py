"""Task generators for the hands-on commands: exec, sh, root_sh, dev, run_lab, cp, env_list, env_export.

One subtask per selected deployment (``doit exec:demo -- python -V``).  They
run only when asked (never in the default run), always run (``uptodate:
False``), build nothing (a missing image is an error saying which build to
run) and do not take the run lock (see pipeline.reporter.LOCK_FREE).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.stages.environments import copy_out, export_environment, list_environments
from pipeline.stages.hands_on import LAB_PORT, dev_shell, exec_command, run_lab, shell
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.common import per_deployment
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]


# -- actions: module-level so that doit's process pool can pickle them -------------------------
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


@stage_action(lambda name, *_: f"exec:{name}")
def exec_action(ctx: Context, name: str, cmd: list[str] | None = None) -> Any:
    return exec_command(ctx.settings, ctx.engine, name, command_line(f"exec:{name}", cmd))


@stage_action(lambda name, *_: f"sh:{name}")
def sh_action(ctx: Context, name: str) -> Any:
    return shell(ctx.settings, ctx.engine, name)


@stage_action(lambda name, *_: f"root_sh:{name}")
def root_sh_action(ctx: Context, name: str) -> Any:
    return shell(ctx.settings, ctx.engine, name, root=True)


@stage_action(lambda name, *_: f"dev:{name}")
def dev_action(ctx: Context, name: str, user: str = "") -> Any:
    return dev_shell(ctx.settings, ctx.engine, name, user or None)


@stage_action(lambda name, *_: f"run_lab:{name}")
def run_lab_action(ctx: Context, name: str, host: str = "127.0.0.1", port: int = LAB_PORT) -> Any:
    return run_lab(ctx.settings, ctx.engine, name, host, port)


@stage_action(lambda name, *_: f"cp:{name}")
def cp_action(ctx: Context, name: str, paths: list[str] | None = None) -> Any:
    return copy_out(ctx.settings, ctx.engine, name, command_line(f"cp:{name}", paths))


@stage_action(lambda name, *_: f"env_list:{name}")
def env_list_action(ctx: Context, name: str) -> Any:
    return list_environments(ctx.settings, ctx.engine, name)


@stage_action(lambda name, *_: f"env_export:{name}")
def env_export_action(ctx: Context, name: str, env: list[str] | None = None, output: str = "") -> Any:
    return export_environment(ctx.settings, ctx.engine, name, env, output or None)


# -- generators ---------------------------------------------------------------------------------

def _per_deployment(basename: str, action: Callable[..., Any], doc: Callable[[str, str], str],
                    group_doc: str, **extra: Any) -> Iterator[TaskDict]:
    """Hands-on subtasks always run (``uptodate: False``) and build nothing first."""
    return per_deployment(basename, group_doc, lambda ctx, dep: {
        "doc": doc(dep.name, dep.image_ref(ctx.settings.environment)),
        "actions": [(action, [dep.name])],
        "uptodate": [False],
        **extra,
    })


def exec_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "exec", exec_action,
        lambda name, ref: f"run a command in a container from {ref}: doit exec:{name} -- CMD ARGS",
        "run a command in every selected deployment's image (give it to one: doit exec:NAME -- CMD)",
        pos_arg="cmd",
    )


def sh_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "sh", sh_action,
        lambda name, ref: f"interactive shell (bash, else sh) in {ref} as its user",
        "interactive shell in each selected deployment's image",
    )


def root_sh_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "root_sh", root_sh_action,
        lambda name, ref: f"interactive shell (bash, else sh) in {ref} as root",
        "interactive root shell in each selected deployment's image",
    )


def dev_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "dev", dev_action,
        lambda name, ref: (f"shell in {ref} with deployments/{name}/environments, env-frozen and the common "
                           "scripts mounted read-write; the container is kept"),
        "development shell in each selected deployment's image",
        params=[{"name": "user", "long": "user", "short": "u", "type": str, "default": "",
                 "help": "run the shell as this user (e.g. 0 for root); default: the image's user"}],
    )


def run_lab_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "run_lab", run_lab_action,
        lambda name, ref: f"JupyterLab from {ref} on http://HOST:PORT/lab (Ctrl-C stops it)",
        "JupyterLab from each selected deployment's image",
        params=[
            {"name": "port", "long": "port", "short": "p", "type": int, "default": LAB_PORT,
             "help": f"host port (default {LAB_PORT})"},
            {"name": "host", "long": "host", "type": str, "default": "127.0.0.1",
             "help": "host address to publish on (default 127.0.0.1; 0.0.0.0 for every interface)"},
        ],
    )


def cp_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "cp", cp_action,
        lambda name, ref: f"copy a file or directory out of {ref}: doit cp:{name} -- SRC DEST",
        "copy a file or directory out of a deployment's image: doit cp:NAME -- SRC DEST",
        pos_arg="paths",
    )


def env_list_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "env_list", env_list_action,
        lambda name, ref: f"list the pinned environments in {ref}",
        "list the pinned environments in each selected deployment's image",
    )


def env_export_tasks() -> Iterator[TaskDict]:
    yield from _per_deployment(
        "env_export", env_export_action,
        lambda name, ref: f"print one environment's pinned spec from {ref}: doit env_export:{name} -- ENV",
        "print one environment's pinned spec: doit env_export:NAME -- ENV",
        pos_arg="env",
        params=[{"name": "output", "long": "output", "short": "o", "type": str, "default": "",
                 "help": "write the spec to this file instead of printing it"}],
    )
