"""doit entry point: DOIT_CONFIG and task generators only. The work lives in pipeline/."""

from pipeline.reporter import PipelineReporter
from pipeline.tasks import graph, hands_on, images, inspect

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": ".doit.db",
    "reporter": PipelineReporter,
    "verbosity": 2,
    "default_tasks": ["certs", "root", "chain", "dockerfile", "build", "test", "freeze", "manifest"],
}


# -- the DAG ------------------------------------------------------------------------------

def task_certs():
    """Copy the host CA bundle into the certs layer's context."""
    return images.certs_task()


def task_root():
    """Make the root image (image, rootfs tarball or debootstrap)."""
    return images.root_task()


def task_chain():
    """Build the shared layers in order."""
    yield from images.chain_tasks()


def task_dockerfile():
    """Render each deployment's Dockerfile.custom + trailer under build/."""
    yield from images.dockerfile_tasks()


def task_build():
    """Build each deployment's mission image."""
    yield from images.build_tasks()


def task_test():
    """Run each deployment's test command in a fresh container."""
    yield from inspect.test_tasks()


def task_freeze():
    """Copy the image's pinned specs into deployments/NAME/env-frozen/ (floating mode)."""
    yield from inspect.freeze_tasks()


def task_manifest():
    """Write build/manifests/NAME.yaml: image, inputs, OS, packages."""
    yield from inspect.manifest_tasks()


# -- views (run when asked, never cached) ---------------------------------------------------

def task_history():
    """Print the image's layers, newest first, with sizes."""
    yield from inspect.history_tasks()


def task_graph():
    """Write the DAG as DOT (and SVG/PNG with Graphviz), stale stages marked."""
    return graph.graph_task()


# -- hands-on commands (run only when asked) -------------------------------------------------

def task_exec():
    """Run a command in a container: doit exec:NAME -- CMD ARGS."""
    yield from hands_on.exec_tasks()


def task_sh():
    """Interactive shell in the image as its user."""
    yield from hands_on.sh_tasks()


def task_root_sh():
    """Interactive shell in the image as root."""
    yield from hands_on.root_sh_tasks()


def task_dev():
    """Interactive shell with environments/, env-frozen/ and the common scripts mounted read-write."""
    yield from hands_on.dev_tasks()


def task_run_lab():
    """JupyterLab from the image on a host port."""
    yield from hands_on.run_lab_tasks()


def task_cp():
    """Copy a file or directory out of the image: doit cp:NAME -- SRC DEST."""
    yield from hands_on.cp_tasks()


def task_env_list():
    """List the environments in the image."""
    yield from hands_on.env_list_tasks()


def task_env_export():
    """Print one environment's pinned spec: doit env_export:NAME -- ENV."""
    yield from hands_on.env_export_tasks()
