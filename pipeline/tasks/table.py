"""The stage table: one row per doit task, each fact about a stage stated once.

dodo.py's ``task_*`` creators and ``default_tasks``, ``doit graph``'s stages,
the reporter's lock-free and quiet lists, image_all's dependencies and every
``task_dep`` string are read from these rows.  A row names its stage functions
as "module:function" (imported when first called) with the arguments they take
(``args``, see pipeline/tasks/stage.py ARGS); a stage whose options need a word
of translation has a small adapter ``fn(ctx, NAME, **options)`` in a tasks/
module instead.  Adding a stage: docs/design.md, "Adding a stage".
"""

from __future__ import annotations

from pipeline.settings import LAB_PORT, Deployment
from pipeline.tasks import (
    chain_tasks,
    hands_on_adapters,
    registry_adapters,
    signing_adapters,
    slim_adapters,
    source_tasks,
)
from pipeline.tasks.context import Context
from pipeline.tasks.stage import Stage, signing
from pipeline.yamlfile import display

_S = ("settings",)
_SEH = ("settings", "engine", "hasher")
_SED = ("settings", "engine", "deployment")
_PARAM_REF = {"name": "reference", "long": "ref", "default": "", "help": "tag or sha256 digest (default: build tag)"}


def _manifest_doc(ctx: Context, dep: Deployment | None) -> str:
    from pipeline.stages.manifest import manifest_path

    assert dep is not None
    return f"write {display(manifest_path(ctx.settings, dep.name))}: image, inputs, parents, OS, packages"


def _parent(ctx: Context, dep: Deployment) -> list[str]:
    return [ctx.mission(dep.name).parent_task]


def _preparation(ctx: Context, dep: Deployment) -> list[str]:
    return list(dep.task_dep)


def _prepared_files(ctx: Context, dep: Deployment) -> list[str]:
    return list(dep.file_dep)


def _ecr_scan(ctx: Context, dep: Deployment) -> bool:
    return ctx.settings.scan.backend_for(dep.registry) == "ecr"


def _image_all(ctx: Context, dep: Deployment) -> list[str]:
    """image_all's stages: every row with ``image_all`` (true, or true for this deployment)."""
    return [f"{s.name}:{dep.name}" for s in STAGES
            if s.image_all is True or callable(s.image_all) and s.image_all(ctx, dep)]


STAGES: tuple[Stage, ...] = (
    # -- the DAG -----------------------------------------------------------------------------------
    Stage("certs", "Copy the host CA bundle into the certs layer's context.",
          run="pipeline.stages.certs:write_certs", check="pipeline.stages.certs:certs_freshness", args=_S,
          per_deployment=False, default=True, graph=True,
          task_doc="copy the host CA bundle to certs.target (reruns only when its bytes change)"),
    Stage("root", "Make the root image (image, rootfs tarball or debootstrap).",
          run="pipeline.stages.root:build_root", check="pipeline.stages.root:root_freshness", args=_SEH,
          per_deployment=False, default=True, graph=True,
          task_doc=lambda c, d: f"the root image {c.settings.root_ref} from root.{c.settings.root.kind}"),
    Stage("chain", "Build the shared layers in order.", tasks=chain_tasks.chain_tasks, default=True, graph=True),
    # deployment.yaml's task_dep/file_dep: the user's preparation tasks (their targets are file_dep here, so
    # doit runs them first, and only when their own inputs changed); the dockerfile stage checks the
    # context's sources, so a preparation step that writes them goes before it too.
    Stage("dockerfile", "Render each deployment's Dockerfile.custom + trailer under build/.",
          run="pipeline.stages.dockerfile:write_dockerfile", check="pipeline.stages.dockerfile:dockerfile_freshness",
          args=("settings", "mission"), after=(_preparation,), file_dep=_prepared_files, default=True, graph=True,
          group_doc="render every selected deployment's Dockerfile",
          task_doc="build/dockerfiles/{name}.Dockerfile from its Dockerfile(.custom) and the trailer"),
    Stage("build", "Build each deployment's mission image.",
          run="pipeline.stages.images:build_image", check="pipeline.stages.image_check:image_freshness",
          args=("settings", "engine", "mission", "hasher"), after=(_parent, "dockerfile", _preparation),
          file_dep=_prepared_files, default=True, graph=True,
          group_doc="every selected deployment's mission image", task_doc="mission image {image}"),
    Stage("test", "Run each deployment's test command in a fresh container.",
          run="pipeline.stages.testing:run_test", check="pipeline.stages.testing:passed_freshness",
          after=("build",), default=True, graph=True,
          group_doc="run every selected deployment's test command",
          task_doc=lambda c, d: f"run {d.test} in a fresh container from {c.mission(d.name).ref} "
                                "(reruns when the image changes)"),
    Stage("drift", "Compare the image's pinned specs with deployments/NAME/env-frozen/ and report the drift "
                   "(writes nothing).",
          run="pipeline.stages.drift:drift", check="pipeline.stages.drift:drift_freshness",
          after=("build",), default=True, graph=True,
          group_doc="report how each image's pins differ from deployments/NAME/env-frozen/ (writes nothing)",
          task_doc=lambda c, d: f"compare {d.freeze} in the image with deployments/{d.name}/env-frozen/ and print "
                                f"the drift (writes nothing; `doit freeze:{d.name}` writes)"),
    # Never in the default run or image_all: plain `doit` leaves the tracked tree as it found it.
    Stage("freeze", "WRITES deployments/NAME/env-frozen/ from the image's pinned specs; only when asked "
                    "(doit freeze:NAME).",
          run="pipeline.stages.freeze:freeze", check="pipeline.stages.freeze:freeze_freshness",
          after=("build",), graph=True,
          group_doc="WRITES deployments/NAME/env-frozen/ from the image's pins (explicit only: plain doit just "
                    "reports drift)",
          task_doc=lambda c, d: f"WRITE deployments/{d.name}/env-frozen/ from {d.freeze} in the image (floating "
                                "mode; never part of plain doit or image_all)"),
    Stage("manifest", "Write build/manifests/NAME.yaml: image, inputs, OS, packages.",
          run="pipeline.stages.manifest:write_manifest", check="pipeline.stages.manifest:manifest_freshness",
          after=("build",), default=True, graph=True,
          group_doc="write every selected deployment's image manifest", task_doc=_manifest_doc),
    # -- registries and CI (their checks ask the registry: not in the graph, which only looks) ---------
    Stage("login", "docker login to the registries the selected deployments use.", run=registry_adapters.login_action,
          per_deployment=False,
          task_doc="docker login to the registries of the selected deployments (password on stdin)"),
    Stage("push", "Push each mission image at its build tag, unless the registry already holds it.",
          run="pipeline.stages.publish:push", check="pipeline.stages.publish:push_freshness", args=_SED,
          after=("build", "test"), image_all=True, group_doc="push every selected mission image",
          task_doc="push {name}'s image at its build tag (skipped when the registry already holds it)"),
    Stage("scan", "Scan each pushed image: findings, Ubuntu CVE status, ignore list, gate, report.",
          run="pipeline.stages.scan:scan", check="pipeline.stages.scan:scan_freshness",
          after=("manifest", ("push", _ecr_scan)), group_doc="scan every selected deployment's image",
          task_doc=lambda c, d: f"vulnerability scan of {d.name} ({c.settings.scan.backend_for(d.registry)}): "
                                "gate and report"),
    Stage("clean_registry", "List (or --yes delete) untagged images whose findings reach --severity (ECR).",
          run="pipeline.stages.clean:clean_registry", args=("settings", "name"),
          params=({"name": "severity", "long": "severity", "default": "HIGH", "help": "minimum severity to delete"},
                  {"name": "yes", "long": "yes", "type": bool, "default": False, "help": "delete (default: dry run)"}),
          group_doc="untagged vulnerable images in each ECR repository",
          task_doc="list (or with --yes delete) untagged images of {name} with findings at --severity or worse"),
    Stage("sbom", "Write build/sbom/NAME.cdx.json (CycloneDX 1.6) and NAME.spdx.json (SPDX 2.3) from the manifest.",
          run="pipeline.stages.sbom:write_sbom", check="pipeline.stages.sbom:sbom_freshness",
          after=("manifest",), image_all=True, graph=True,
          group_doc="write every selected deployment's SBOM (CycloneDX and SPDX)",
          task_doc="write build/sbom/{name}.cdx.json (CycloneDX 1.6) and .spdx.json (SPDX 2.3) from the manifest"),
    Stage("attest", "Sign the image's SLSA provenance and SBOM (sign.key) and attach them to its pushed digest.",
          run="pipeline.stages.attest:attest", check="pipeline.stages.attest:attest_freshness",
          after=("push", "sbom"), image_all=signing,
          group_doc="sign and attach every selected image's provenance and SBOM",
          task_doc="sign {name}'s SLSA provenance and SBOM with sign.key and attach them to the pushed digest"),
    # A signing checkout (CI) attests first; a verifier (no sign.key) only reads the registry.
    Stage("verify", "Check the image's signed provenance (sign.public_keys) and compare it with this checkout (--ref).",
          run=signing_adapters.verify_action, check="pipeline.stages.verify:verify_freshness", args=_SEH + ("name",),
          check_options=True, params=(_PARAM_REF,), after=(("attest", signing),), image_all=signing,
          group_doc="verify every selected image's signed provenance",
          task_doc="verify {name}'s signed provenance and compare it with this checkout (--ref TAG|sha256:…)"),
    Stage("sign_keygen", "Write a signing key pair (--out PATH --type ecdsa|ed25519); the private key gets mode 0600.",
          run=signing_adapters.keygen_action, per_deployment=False,
          params=({"name": "out", "long": "out", "default": "", "help": "private key file (default: sign.key)"},
                  {"name": "kind", "long": "type", "default": "ecdsa", "help": "ecdsa (P-256) or ed25519"}),
          task_doc="write a signing key pair: the private key (mode 0600) at --out (default sign.key), "
                   "the public at .pub"),
    # A signing checkout verifies what it attested before the tag moves (sign.required also gates inside).
    Stage("promote", "Add the promoted tag to the pushed manifest, registry-side (--from TAG --to TAG).",
          run=registry_adapters.promote_action, check=registry_adapters.promote_check, check_options=True,
          params=({"name": "source", "long": "from", "default": "",
                   "help": "source tag or digest (default: the build tag)"},
                  {"name": "target", "long": "to", "default": "", "help": "tag to add (default: the promoted tag)"}),
          after=("push", "scan", ("verify", signing)), image_all=True,
          group_doc="promote every selected image (registry-side retag)",
          task_doc="tag {name}'s pushed manifest with the promoted tag (--from TAG --to TAG to choose)"),
    Stage("pull", "Pull a deployment's image by tag or digest (--ref).", run=registry_adapters.pull_action,
          params=(_PARAM_REF, {"name": "tag", "long": "tag", "type": bool, "default": False,
                               "help": "also point the mission tag at the pulled image (a pull by digest or "
                                       "other tag leaves it alone)"}),
          group_doc="pull every selected image",
          task_doc="pull {name}'s image by tag or digest: doit pull:{name} --ref TAG|sha256:… [--tag]"),
    Stage("delete", "Delete tags or digests from the registry: doit delete:NAME -- TAG|DIGEST ...",
          run=registry_adapters.delete_action, pos_arg="refs",
          params=({"name": "all_tags", "long": "all-tags", "type": bool, "default": False,
                   "help": "also delete the other tags on the same digest (a generic registry deletes by digest)"},),
          group_doc="delete tags or digests from the registry",
          task_doc="delete tags or digests of {name}: doit delete:{name} [--all-tags] -- TAG|DIGEST …"),
    Stage("release", "Tag the promoted images and the git commit: doit release -- v1.2.3.",
          run=registry_adapters.release_action, per_deployment=False, pos_arg="version",
          task_doc="tag the promoted images and the git commit: doit release -- v1.2.3 (main branch, in sync)"),
    Stage("image_all", "CI: build, test, push, sbom, attest, scan, verify and promote each selected deployment.",
          after=(_image_all,), group_doc="build, test, push, sign, scan, verify and promote every selected deployment",
          task_doc="build, test, push, sbom, attest, scan, verify and promote {name}"),
    # -- views (run when asked, never cached) ----------------------------------------------------
    Stage("history", "Print the image's layers, newest first, with sizes.", run="pipeline.stages.history:history",
          params=({"name": "full", "long": "full", "type": bool, "default": False,
                   "help": "show each layer's whole instruction instead of shortening it"},),
          lock=False, group_doc="print every selected deployment's layer table",
          task_doc="print the layers of {image}, newest first, with sizes (--full: whole instructions)"),
    Stage("graph", "Write the DAG as DOT (and SVG/PNG with Graphviz), stale stages marked.",
          run="pipeline.tasks.graph:graph_action", args=("ctx",), per_deployment=False, lock=False,
          task_doc="write build/graph/dag.dot (+ .svg/.png with Graphviz), stale stages marked"),
    # -- hands-on commands (run only when asked; no run lock: a shell must not block other runs) ---
    Stage("exec", "Run a command in a container: doit exec:NAME -- CMD ARGS.", run=hands_on_adapters.exec_action,
          pos_arg="cmd", lock=False,
          group_doc="run a command in every selected deployment's image (give it to one: doit exec:NAME -- CMD)",
          task_doc="run a command in a container from {ref}: doit exec:{name} -- CMD ARGS"),
    Stage("sh", "Interactive shell in the image as its user.", run=hands_on_adapters.sh_action, lock=False,
          group_doc="interactive shell in each selected deployment's image",
          task_doc="interactive shell (bash, else sh) in {ref} as its user"),
    Stage("root_sh", "Interactive shell in the image as root.", run=hands_on_adapters.root_sh_action, lock=False,
          group_doc="interactive root shell in each selected deployment's image",
          task_doc="interactive shell (bash, else sh) in {ref} as root"),
    Stage("dev", "Interactive shell with environments/, env-frozen/ and the common scripts mounted read-write.",
          run=hands_on_adapters.dev_action, lock=False,
          params=({"name": "user", "long": "user", "short": "u", "type": str, "default": "",
                   "help": "run the shell as this user (e.g. 0 for root); default: the image's user"},),
          group_doc="development shell in each selected deployment's image",
          task_doc="shell in {ref} with deployments/{name}/environments, env-frozen and the common scripts "
                   "mounted read-write; the container is kept"),
    Stage("run_lab", "JupyterLab from the image on a host port.", run=hands_on_adapters.run_lab_action, lock=False,
          params=({"name": "port", "long": "port", "short": "p", "type": int, "default": LAB_PORT,
                   "help": f"host port (default {LAB_PORT})"},
                  {"name": "host", "long": "host", "type": str, "default": "127.0.0.1",
                   "help": "host address to publish on (default 127.0.0.1; 0.0.0.0 for every interface)"}),
          group_doc="JupyterLab from each selected deployment's image",
          task_doc="JupyterLab from {ref} on http://HOST:PORT/lab (Ctrl-C stops it)"),
    Stage("cp", "Copy a file or directory out of the image: doit cp:NAME -- SRC DEST.", run=hands_on_adapters.cp_action,
          pos_arg="paths", lock=False,
          group_doc="copy a file or directory out of a deployment's image: doit cp:NAME -- SRC DEST",
          task_doc="copy a file or directory out of {ref}: doit cp:{name} -- SRC DEST"),
    Stage("env_list", "List the environments in the image.", run=hands_on_adapters.env_list_action, lock=False,
          group_doc="list the pinned environments in each selected deployment's image",
          task_doc="list the pinned environments in {ref}"),
    Stage("env_export", "Print one environment's pinned spec: doit env_export:NAME -- ENV.",
          run=hands_on_adapters.env_export_action, pos_arg="env", lock=False, quiet=True,
          params=({"name": "output", "long": "output", "short": "o", "type": str, "default": "",
                   "help": "write the spec to this file instead of printing it"},),
          group_doc="print one environment's pinned spec: doit env_export:NAME -- ENV",
          task_doc="print one environment's pinned spec from {ref}: doit env_export:{name} -- ENV"),
    # -- patching and squashing (patch*: only when asked, on the image the mission tag holds) ------
    Stage("patch", "Run a script as root in a container and commit it as the new image (history kept inside).",
          run=slim_adapters.patch_action,
          params=(slim_adapters.param("script", "the patch script (a host file, run as root in the image)", short="s"),
                  slim_adapters.AUTHOR, slim_adapters.DESCRIPTION, slim_adapters.SOURCE),
          group_doc="patch a deployment's image: doit patch:NAME --script FILE --author WHO --description WHAT",
          task_doc="run --script as root in a container from {ref} and commit it as {ref}"),
    Stage("patch_os", "Patch with the shipped OS-upgrade script.", run=slim_adapters.patch_os_action,
          params=(slim_adapters.AUTHOR, slim_adapters.param("description", "recorded in the image", "OS upgrade", "m"), slim_adapters.SOURCE),
          group_doc="OS upgrade of each selected deployment's image, as a patch",
          task_doc="OS upgrade of {ref} (the shipped apt-upgrade program) as a patch"),
    Stage("patch_ssl", "Patch a CA bundle into the image's trust store.", run=slim_adapters.patch_ssl_action,
          params=(slim_adapters.AUTHOR, slim_adapters.DESCRIPTION, slim_adapters.param("bundle", "the PEM bundle (default: certs.target)"),
                  slim_adapters.SOURCE),
          group_doc="install a CA bundle into each selected deployment's image, as a patch",
          task_doc="install the CA bundle (certs.target or --bundle) into {ref}'s trust store"),
    Stage("patch_history", "List the patches recorded in an image.", run=slim_adapters.patch_history_action,
          params=(slim_adapters.param("image", "another image to look into (default: the mission image)"),),
          group_doc="list the patches recorded in each selected deployment's image",
          task_doc="list the patches recorded in {ref} (/opt/patches)"),
    Stage("crosslink", "Hard-link duplicate files inside the image and commit the result.",
          run=slim_adapters.crosslink_action, check=slim_adapters.crosslink_check, check_options=True,
          params=(slim_adapters.PATHS, {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
                               "help": "only report what would be linked (always runs)"}),
          group_doc="hard-link duplicate files in each selected deployment's image",
          task_doc="hard-link duplicate files of {ref} into NAMESPACE/squash-{name}:crosslinked"),
    Stage("export", "Stream the crosslinked container's file system into docker import (with export:NAME).",
          run=slim_adapters.export_action, check=slim_adapters.export_check, check_options=True, after=("crosslink",),
          params=(slim_adapters.param("keep_archive", "the archive to write (default build/squash/NAME.tar)"),),
          group_doc="export each selected deployment's crosslinked image to an archive",
          task_doc="write the crosslinked file system of {ref} to build/squash/{name}.tar (or --keep-archive)"),
    Stage("import", "Create the single-layer image from the export, configuration restored.",
          run=slim_adapters.import_action, check=slim_adapters.import_check, check_options=True, after=("crosslink",),
          params=(slim_adapters.param("archive", "import this tar instead of build/squash/NAME.tar or a stream"), slim_adapters.KEEP),
          group_doc="import each selected deployment's crosslinked file system as one layer",
          task_doc="single-layer image of the crosslinked {ref}, configuration restored"),
    Stage("squash", "crosslink -> export -> import, verified before the tag moves.",
          run=slim_adapters.squash_action, check=slim_adapters.squash_check, check_options=True,
          params=(slim_adapters.PATHS, slim_adapters.KEEP),
          group_doc="squash each selected deployment's image",
          task_doc="one pass: export {ref}, link duplicates, import as one verified layer, then move its tag"),
    # -- source scanning and secrets (their own generators: see pipeline/tasks/source_tasks.py) --------
    Stage("sscan", "Scan the project's and deployments' sources: yaml, lint, bandit, deps.",
          tasks=source_tasks.sscan_tasks, per_deployment=False),
    Stage("secrets_clone", "Clone a deployment's secrets repository under deployments/NAME/secrets/.",
          tasks=source_tasks.secrets_clone_tasks),
    Stage("secrets_edit", "Decrypt ENVIRONMENT.yaml into $EDITOR, re-encrypt and commit.",
          tasks=source_tasks.secrets_edit_tasks),
    # secrets_edit takes the lock: a second edit of the same checkout must wait, or one edit is lost.
    Stage("secrets_cat", "Print the decrypted ENVIRONMENT.yaml to stdout.",
          tasks=source_tasks.secrets_cat_tasks, lock=False, quiet=True),
    Stage("secrets_push", "Push the secrets repository's commits.", tasks=source_tasks.secrets_push_tasks),
)

_BY_NAME = {stage.name: stage for stage in STAGES}


def get(name: str) -> Stage:
    """The row of stage ``name`` (KeyError: no such stage)."""
    return _BY_NAME[name]


def default_tasks() -> list[str]:
    """Plain `doit`: every row with ``default``; never freeze (drift only reports)."""
    return [s.name for s in STAGES if s.default]


def graph_stages() -> list[Stage]:
    return [s for s in STAGES if s.graph]


def lock_free() -> frozenset[str]:
    """Tasks that only look at images or run long interactive containers: no run lock."""
    return frozenset(s.name for s in STAGES if not s.lock)


def quiet() -> frozenset[str]:
    """Tasks whose stdout is data (`doit secrets_cat:demo > file`): no task lines, no summary around it."""
    return frozenset(s.name for s in STAGES if s.quiet)
