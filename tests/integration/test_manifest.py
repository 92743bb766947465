"""manifest:DEPLOYMENT: build/manifests/NAME.yaml describes the image, its inputs, OS and packages."""
from __future__ import annotations

import docker
import pytest
import yaml
from helpers import (
    Project,
    assert_no_containers,
    assert_nothing_ran,
    assert_ok,
    custom_dockerfile,
    image_id,
    labels_of,
    load_manifest,
)

pytestmark = pytest.mark.docker

KEYS = ["deployment", "image", "environment", "frozen", "inputs", "parents", "os_release", "dpkg", "dpkg_details", "python", "notes"]

FAKE_SYSTEM = (
    "RUN mkdir -p /opt/envs/x/lib/python3.11/site-packages/Foo_Bar-1.2.3.dist-info"
    " /opt/envs/x/lib/python3.11/site-packages/pip/_vendor/vendored-9.9.dist-info /var/lib/dpkg /usr/lib"
    " && printf 'Package: one\\nStatus: install ok installed\\nVersion: 1.0-1\\nDescription: first\\n more\\n\\n"
    "Package: two\\nStatus: deinstall ok config-files\\nVersion: 2.0\\n' > /var/lib/dpkg/status"
    " && printf 'ID=busybox\\nNAME=\"Busy Box\"\\n' > /usr/lib/os-release"
    " && ln -s ../usr/lib/os-release /etc/os-release"
)


def test_manifest_of_a_plain_busybox_image(docker_client: docker.DockerClient, built: Project) -> None:
    manifest = load_manifest(built, "beta")
    assert list(manifest) == KEYS
    tag = built.mission_tag("beta")
    assert manifest["deployment"] == "beta"
    assert manifest["image"]["id"] == image_id(docker_client, tag)
    assert manifest["image"]["tag"] == tag
    assert manifest["image"]["size"] > 0 and manifest["image"]["created"]
    assert (manifest["environment"], manifest["frozen"]) == ("sandbox", False)
    assert manifest["inputs"]["key"] == labels_of(docker_client, tag)["pipeline.inputs"]
    assert manifest["inputs"]["parts"]["parent"] == image_id(docker_client, built.local_image("common"))
    assert [(p["stage"], p["tag"], p["id"]) for p in manifest["parents"]] == [
        (stage, built.local_image(name), image_id(docker_client, built.local_image(name)))
        for stage, name in (("chain:common", "common"), ("chain:certs", "certs"), ("root", "root"))
    ]
    # busybox: no os-release, no dpkg, no Python; said so, not failed
    assert manifest["os_release"] is None and manifest["dpkg"] is None and manifest["python"] is None
    notes = " ".join(manifest["notes"])
    assert "dpkg" in notes and "python" in notes.lower() and "os_release" in notes
    assert_no_containers(docker_client, built.ns)
    again = built.run()
    assert_nothing_ran(again)
    assert {"manifest:alpha", "manifest:beta"} <= again.uptodate, again


def test_manifest_lists_dpkg_and_python_packages(docker_client: docker.DockerClient, project: Project) -> None:
    project.write("alpha/Dockerfile.custom", custom_dockerfile("alpha", FAKE_SYSTEM))
    result = project.run("deployment=alpha")
    assert_ok(result)
    assert "manifest:alpha" in result.ran, result
    manifest = load_manifest(project, "alpha")
    assert manifest["dpkg"] == {"one": "1.0-1"}
    # no Source: field, so "one" is its own source at its own version
    assert manifest["dpkg_details"] == {"one": {"arch": manifest["dpkg_details"]["one"]["arch"], "source": "one",
                                                "source_version": "1.0-1"}}
    assert manifest["python"] == {"/opt/envs/x": {"foo-bar": "1.2.3"}}
    assert manifest["os_release"] == {"ID": "busybox", "NAME": "Busy Box"}
    assert manifest["notes"] == []
    assert_no_containers(docker_client, project.ns)
    # A manifest written before source packages were recorded is stale (the scan needs them).
    path = project.root / "build" / "manifests" / "alpha.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in manifest.items() if k != "dpkg_details"}, sort_keys=False))
    assert "predates the dpkg_details section" in project.info("manifest:alpha", "deployment=alpha").output


def test_manifest_reruns_for_a_new_image_or_a_lost_file(built: Project) -> None:
    path = built.root / "build" / "manifests" / "alpha.yaml"
    old_id = load_manifest(built, "alpha")["image"]["id"]
    built.append("alpha/Dockerfile.custom", "RUN echo v2 > /v2\n")
    result = built.run()
    assert_ok(result)
    assert "manifest:alpha" in result.ran and "manifest:beta" in result.uptodate, result
    assert load_manifest(built, "alpha")["image"]["id"] != old_id
    path.unlink()
    assert "missing" in built.info("manifest:alpha").output
    assert "manifest:alpha" in built.run("manifest:alpha").ran
    assert path.is_file()
