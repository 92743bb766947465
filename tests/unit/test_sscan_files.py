"""sscan's file discovery, requirements parsing and the sscan:/secrets: configuration keys."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError
from pipeline.settings import Settings
from pipeline.stages import sscan_files
from pipeline.stages.sscan.deps import requirements


def tree(tmp_path: Path, pipeline_extra: str = "", deployment_extra: str = "") -> Path:
    files = {
        "deployments/pipeline.yaml": "root: {image: scratch}\n" + pipeline_extra,
        "deployments/alpha/deployment.yaml": "repo: alpha\n" + deployment_extra,
        "deployments/alpha/Dockerfile.custom": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def load(root: Path) -> Settings:
    return config.load(root / "deployments", None, root / "build")


def write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def test_discovery_finds_yaml_python_and_python_scripts_and_skips_excluded_folders(tmp_path: Path) -> None:
    root = tree(tmp_path)
    write(root, "pkg/mod.py", "x = 1\n")
    write(root, "deployments/alpha/scripts/run", "#!/usr/bin/env python3\nprint(1)\n")
    write(root, "deployments/alpha/scripts/run.sh", "#!/bin/sh\necho\n")
    write(root, "deployments/alpha/scripts/shell", "#!/bin/bash\n# python is mentioned only later\n")
    write(root, "deployments/alpha/conf.yml", "a: 1\n")
    for rel in (".venv/x.py", "build/x.py", ".git/x.yaml", "node_modules/m/x.py", "deployments/alpha/secrets/x.yaml",
                "pkg/__pycache__/x.py", "pkg.egg-info/x.py", "env/x.py"):
        write(root, rel, "x\n")
    write(root, "env/pyvenv.cfg", "home = /usr\n")  # a virtualenv under any name
    found = sscan_files.discover(load(root))
    def rel(paths):
        return sorted(str(p.relative_to(root)) for p in paths)
    assert rel(found.python) == ["deployments/alpha/scripts/run", "pkg/mod.py"]
    assert rel(found.yaml) == ["deployments/alpha/conf.yml", "deployments/alpha/deployment.yaml",
                               "deployments/pipeline.yaml"]


def test_deployments_outside_the_project_are_scanned_too(tmp_path: Path) -> None:
    root = tree(tmp_path / "elsewhere")
    write(root, "deployments/alpha/tool.py", "x = 1\n")
    settings = config.load(root / "deployments", None, tmp_path / "project" / "build")
    assert [p.name for p in sscan_files.discover(settings).python] == ["tool.py"]


def test_requirements_pins_are_audited_and_other_lines_noted(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text("# comment\nExample_Pkg==1.1.0\nloose>=1\n-e git+https://x/y#egg=y\n"
                    "marked==2.0 ; python_version >= '3'\nnot a requirement !!\nhashed==3.0 \\\n")
    packages, notes = requirements(path)
    assert [(p.name, p.version) for p in packages] == [("Example_Pkg", "1.1.0"), ("marked", "2.0"), ("hashed", "3.0")]
    assert len(notes) == 3 and "loose is not pinned" in notes[0]


def test_sscan_keys_are_validated(tmp_path: Path) -> None:
    root = tree(tmp_path, "sscan:\n  pip_audit: false\n  osv: osv\n  ignore: ign.yaml\n")
    (root / "deployments" / "osv").mkdir()
    write(root, "deployments/ign.yaml", "[]\n")
    settings = load(root)
    assert settings.sscan.pip_audit is False
    assert settings.sscan.osv == (root / "deployments" / "osv").resolve()
    assert settings.sscan.ignore == ((root / "deployments" / "ign.yaml").resolve(),)
    for bad, needle in (("sscan: {osv: nowhere}\n", "sscan.osv"), ("sscan: {ignore: [missing.yaml]}\n", "sscan.ignore"),
                        ("sscan: {bogus: 1}\n", "unknown key 'sscan.bogus'"), ("sscan: {ignore: 3}\n", "sscan.ignore")):
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            load(tree(tmp_path / bad[:12].replace(" ", "_").replace(":", ""), bad))


def test_secrets_keys_are_validated(tmp_path: Path) -> None:
    root = tree(tmp_path, deployment_extra="secrets:\n  repo: https://git-codecommit.us-east-1.amazonaws.com/v1/repos/s\n"
                                           "  role_arn: arn:aws:iam::1:role/r\n  region: us-east-1\n")
    secrets = load(root).deployment("alpha").secrets
    assert secrets is not None and secrets.role_arn == "arn:aws:iam::1:role/r" and secrets.sts_endpoint_url is None
    assert load(tree(tmp_path / "none")).deployment("alpha").secrets is None
    with pytest.raises(ConfigError, match="password"):
        load(tree(tmp_path / "pw", deployment_extra="secrets: {repo: 'https://me:pw@example.com/r.git'}\n"))
    with pytest.raises(ConfigError, match="missing key 'secrets.repo'"):
        load(tree(tmp_path / "norepo", deployment_extra="secrets: {region: us-east-1}\n"))
