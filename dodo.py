"""doit entry point: DOIT_CONFIG and task generators only. The work lives in pipeline/."""

from pipeline.reporter import PipelineReporter
from pipeline.tasks import graph, hands_on, images, inspect, provenance, publish, scan, slim, sources

DOIT_CONFIG = {
    "backend": "sqlite3",
    "dep_file": ".doit.db",
    "reporter": PipelineReporter,
    "verbosity": 2,
        # Never `freeze` here: plain `doit` leaves the tracked tree as it found it (drift only reports).
    "default_tasks": ["certs", "root", "chain", "dockerfile", "build", "test", "drift", "manifest"],
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


def task_drift():
    """Compare the image's pinned specs with deployments/NAME/env-frozen/ and report the drift (writes nothing)."""
    yield from inspect.drift_tasks()


def task_freeze():
    """WRITES deployments/NAME/env-frozen/ from the image's pinned specs; only when asked (doit freeze:NAME)."""
    yield from inspect.freeze_tasks()


def task_manifest():
    """Write build/manifests/NAME.yaml: image, inputs, OS, packages."""
    yield from inspect.manifest_tasks()


# -- registries and CI ----------------------------------------------------------------------

def task_login():
    """docker login to the registries the selected deployments use."""
    return publish.login_task()


def task_push():
    """Push each mission image at its build tag, unless the registry already holds it."""
    yield from publish.push_tasks()


def task_scan():
    """Scan each pushed image: findings, Ubuntu CVE status, ignore list, gate, report."""
    yield from scan.scan_tasks()


def task_clean_registry():
    """List (or --yes delete) untagged images whose findings reach --severity (ECR)."""
    yield from scan.clean_registry_tasks()


def task_sbom():
    """Write build/sbom/NAME.cdx.json (CycloneDX 1.6) and NAME.spdx.json (SPDX 2.3) from the manifest."""
    yield from provenance.sbom_tasks()


def task_attest():
    """Sign the image's SLSA provenance and SBOM (sign.key) and attach them to its pushed digest."""
    yield from provenance.attest_tasks()


def task_verify():
    """Check the image's signed provenance (sign.public_keys) and compare it with this checkout (--ref)."""
    yield from provenance.verify_tasks()


def task_sign_keygen():
    """Write a signing key pair (--out PATH --type ecdsa|ed25519); the private key gets mode 0600."""
    return provenance.keygen_task()


def task_promote():
    """Add the promoted tag to the pushed manifest, registry-side (--from TAG --to TAG)."""
    yield from publish.promote_tasks()


def task_pull():
    """Pull a deployment's image by tag or digest (--ref)."""
    yield from publish.pull_tasks()


def task_delete():
    """Delete tags or digests from the registry: doit delete:NAME -- TAG|DIGEST ..."""
    yield from publish.delete_tasks()


def task_release():
    """Tag the promoted images and the git commit: doit release -- v1.2.3."""
    return publish.release_task()


def task_image_all():
    """CI: build, test, push, sbom, attest, scan, verify and promote each selected deployment."""
    yield from publish.image_all_tasks()


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


# -- patching and squashing ------------------------------------------------------------------

def task_patch():
    """Run a script as root in a container and commit it as the new image (history kept inside)."""
    yield from slim.patch_tasks()


def task_patch_os():
    """Patch with the shipped OS-upgrade script."""
    yield from slim.patch_os_tasks()


def task_patch_ssl():
    """Patch a CA bundle into the image's trust store."""
    yield from slim.patch_ssl_tasks()


def task_patch_history():
    """List the patches recorded in an image."""
    yield from slim.patch_history_tasks()


def task_crosslink():
    """Hard-link duplicate files inside the image and commit the result."""
    yield from slim.crosslink_tasks()


def task_export():
    """Stream the crosslinked container's file system into docker import (with export:NAME)."""
    yield from slim.export_tasks()


def task_import():
    """Create the single-layer image from the export, configuration restored."""
    yield from slim.import_tasks()


def task_squash():
    """crosslink -> export -> import, verified before the tag moves."""
    yield from slim.squash_tasks()


# -- source scanning and secrets ----------------------------------------------------------------

def task_sscan():
    """Scan the project's and deployments' sources: yaml, lint, bandit, deps."""
    yield from sources.sscan_tasks()


def task_secrets_clone():
    """Clone a deployment's secrets repository under deployments/NAME/secrets/."""
    yield from sources.secrets_clone_tasks()


def task_secrets_edit():
    """Decrypt ENVIRONMENT.yaml into $EDITOR, re-encrypt and commit."""
    yield from sources.secrets_edit_tasks()


def task_secrets_cat():
    """Print the decrypted ENVIRONMENT.yaml to stdout."""
    yield from sources.secrets_cat_tasks()


def task_secrets_push():
    """Push the secrets repository's commits."""
    yield from sources.secrets_push_tasks()
