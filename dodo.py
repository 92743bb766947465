"""doit entry point: DOIT_CONFIG and task generators only. The work lives in pipeline/."""

from pipeline.reporter import PipelineReporter
from pipeline.tasks import images

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": ".doit.db",
    "reporter": PipelineReporter,
    "verbosity": 2,
    "default_tasks": ["certs", "root", "chain", "dockerfile", "build"],
}


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
