"""Task generators for source scanning and deployment secrets.

sscan
    ``sscan:yaml``, ``sscan:lint``, ``sscan:bandit``, ``sscan:deps``: one scanner each, up to date while
    the files it reads and its settings are unchanged and its last run passed (build/sscan/NAME.json);
    a scanner with findings fails (exit 1), one that could not do its job errs (exit 2).
    ``sscan``: every scanner (the stale ones run, even after one has failed), then one OK/ERROR
    line per scanner and "N scanners failed"; exit 1 when any failed.

    doit's group task would stop at the first failing scanner, so ``sscan`` is a plain task that
    runs the scanners itself, and the four scanner tasks are plain tasks named ``sscan:NAME``.

secrets_clone / secrets_edit / secrets_cat / secrets_push
    One subtask per selected deployment with a ``secrets:`` section.  A deployment without one
    still gets ``secrets_*:NAME`` (outside the group) that fails saying what to add.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pipeline.tasks import context
from pipeline.tasks.boundary import stage_action
from pipeline.tasks.checks import StageCheck
from pipeline.tasks.context import Context

TaskDict = dict[str, Any]

_SCANNER_DOCS = {
    "yaml": "every YAML file of the project and deployments/ loads (yaml.safe_load_all)",
    "lint": "ruff over the project's and deployments' Python (incl. python-shebang scripts)",
    "bandit": "bandit, medium severity and confidence or higher, over the same Python files",
    "deps": "frozen requirements and the installed environment vs pip-audit (PyPI) and sscan.osv",
}


# The stage modules (and the scanners and sops behind them) are imported by the actions and checks
# that use them: every doit start loads this module, and most runs never scan or edit secrets.

# -- actions: module-level so that doit's process pool can pickle them ---------------------------
# (never name a parameter task, targets, dependencies or changed: doit injects those)

@stage_action(lambda scanner: f"sscan:{scanner}")
def scanner_action(ctx: Context, scanner: str) -> Any:
    from pipeline.stages import sscan

    return sscan.check(ctx.settings, ctx.hasher, scanner)


@stage_action(lambda: "sscan")
def sscan_action(ctx: Context) -> Any:
    from pipeline.stages import sscan

    return sscan.scan_all(ctx.settings, ctx.hasher)


@stage_action(lambda verb, name: f"secrets_{verb}:{name}")
def secrets_action(ctx: Context, verb: str, name: str) -> Any:
    """secrets.clone / edit / cat / push for deployment ``name``."""
    from pipeline.stages import secrets

    return getattr(secrets, verb)(ctx.settings, name)


def _scanner_check(ctx: Context, scanner: str) -> Any:
    from pipeline.stages import sscan

    return sscan.scanner_freshness(ctx.settings, ctx.hasher, scanner)


def _clone_check(ctx: Context, name: str) -> Any:
    from pipeline.stages import secrets

    return secrets.clone_freshness(ctx.settings, name)


# -- generators --------------------------------------------------------------------------------------

def sscan_tasks() -> Iterator[TaskDict]:
    context.get()
    yield {
        "basename": "sscan",
        "doc": "run every source scanner (yaml, lint, bandit, deps); one OK/ERROR line each; exit 1 if any failed",
        "actions": [(sscan_action, [])],
        "uptodate": [False],
        "verbosity": 2,
    }
    for scanner in _SCANNER_DOCS:
        yield {
            "basename": f"sscan:{scanner}",
            "doc": _SCANNER_DOCS[scanner],
            "actions": [(scanner_action, [scanner])],
            "uptodate": [StageCheck(f"sscan:{scanner}", _scanner_check, scanner)],
            "verbosity": 2,
        }


def _secrets_tasks(verb: str, group_doc: str, doc: Callable[[str, str], str],
                   uptodate: Callable[[str], list[Any]] = lambda name: [False]) -> Iterator[TaskDict]:
    ctx = context.get()
    basename = f"secrets_{verb}"
    yield {"basename": basename, "name": None, "doc": group_doc}
    for dep in ctx.settings.deployments:
        if dep.secrets is None:
            # Outside the group (a plain task named like a subtask): asked for by name, it says what to add.
            yield {
                "basename": f"{basename}:{dep.name}",
                "doc": f"(deployment {dep.name} has no secrets: section)",
                "actions": [(secrets_action, [verb, dep.name])],
                "uptodate": [False],
                "verbosity": 2,
            }
            continue
        yield {
            "basename": basename,
            "name": dep.name,
            "doc": doc(dep.name, dep.secrets.repo),
            "actions": [(secrets_action, [verb, dep.name])],
            "uptodate": uptodate(dep.name),
            "verbosity": 2,
        }


def secrets_clone_tasks() -> Iterator[TaskDict]:
    yield from _secrets_tasks(
        "clone",
        "clone each selected deployment's secrets repository into deployments/NAME/secrets/",
        lambda name, repo: f"clone {repo} into deployments/{name}/secrets/ (doit -a ... pulls an existing clone)",
        lambda name: [StageCheck(f"secrets_clone:{name}", _clone_check, name)],
    )


def secrets_edit_tasks() -> Iterator[TaskDict]:
    yield from _secrets_tasks(
        "edit",
        "decrypt ENVIRONMENT.yaml into $EDITOR, re-encrypt and commit (give it one deployment: secrets_edit:NAME)",
        lambda name, repo: f"edit deployments/{name}/secrets/ENVIRONMENT.yaml in $EDITOR; commit when changed",
    )


def secrets_cat_tasks() -> Iterator[TaskDict]:
    yield from _secrets_tasks(
        "cat",
        "print the decrypted ENVIRONMENT.yaml of a deployment to stdout (secrets_cat:NAME)",
        lambda name, repo: f"print deployments/{name}/secrets/ENVIRONMENT.yaml decrypted, to stdout only",
    )


def secrets_push_tasks() -> Iterator[TaskDict]:
    yield from _secrets_tasks(
        "push",
        "push each selected deployment's secrets commits",
        lambda name, repo: f"push deployments/{name}/secrets/ to {repo} (refused with uncommitted changes)",
    )
