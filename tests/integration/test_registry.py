"""The registry stages against a real registry (Debian's docker-registry, started by
the tests): login, push, promote, pull, delete, and how each fails.

Every test uses the fixture project with its own repositories (NS-alpha, NS-beta)
on a shared registry, and an empty DOCKER_CONFIG so logins stay inside the test.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable

import docker
import pytest
from helpers import (
    BUILD_TAG,
    PROMOTED_TAG,
    Project,
    RunResult,
    assert_clean_failure,
    assert_not_leaked,
    assert_ok,
    assert_stage_result,
    digests_in,
    image_id,
    image_ref,
    line_with,
    registry_record,
    repo_of,
    use_generic_registry,
)
from services import REGISTRY_PASSWORD, REGISTRY_USER, LocalRegistry

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_config")]

USER_ENV = "PT_REGISTRY_USER"
PASSWORD_ENV = "PT_REGISTRY_PASSWORD"
WRONG_PASSWORD = "wr0ng-Pa55word-for-tests"


def pushed(project: Project, registry: LocalRegistry, deployment: str = "alpha",
           env: dict[str, str] | None = None) -> str:
    """Run push:DEPLOYMENT, require success, return the digest the registry now holds."""
    result = project.run(f"push:{deployment}", env=env)
    assert_ok(result)
    assert f"push:{deployment}" in result.ran, str(result)
    digest = registry.digest(repo_of(project, deployment), BUILD_TAG)
    assert digest, f"the registry has no {BUILD_TAG} for {deployment}\n{result}"
    return digest


def one_line(result: RunResult, *needles: str) -> str:
    line = line_with(result.output, *needles)
    assert line, f"no single line mentions {needles}\n{result}"
    return line


def unauthorized_line(result: RunResult, host: str) -> str:
    line = line_with(result.output, host, "401") or line_with(result.output, host, "unauthorized")
    assert line, f"no line names {host} and 401/unauthorized\n{result}"
    return line


# --------------------------------------------------------------------------
# a plain registry (no auth)
# --------------------------------------------------------------------------
@pytest.fixture
def on_registry(project: Project, registry: LocalRegistry) -> Project:
    """The fixture project, publishing to the session's plain registry."""
    use_generic_registry(project, registry.host)
    return project


def test_push_puts_the_image_in_the_registry(docker_client: docker.DockerClient, registry: LocalRegistry,
                                             on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    result = project.run("push:alpha")
    assert_ok(result)
    assert {"build:alpha", "test:alpha", "push:alpha"} <= result.ran, str(result)
    assert "push:beta" not in result.ran | result.uptodate, str(result)

    media_type, text, digest = registry.manifest(repo, BUILD_TAG)
    local_id = image_id(docker_client, image_ref(project, "alpha", registry.host))
    assert json.loads(text)["config"]["digest"] == local_id, "the registry holds another image"
    assert digest in digests_in(result.output), f"the pushed digest {digest} is not printed\n{result}"
    record = registry_record(project, "alpha")
    assert record["digest"] == digest and record["image"] == local_id, record
    assert record["ref"].startswith(f"{registry.host}/{repo}"), record
    assert registry.tags(repo_of(project, "beta")) == []


def test_push_again_is_up_to_date_and_sends_nothing(registry: LocalRegistry, on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    pushed(project, registry)
    before = registry.requests_for(repo)

    again = project.run("push:alpha")
    assert_ok(again)
    assert "push:alpha" in again.uptodate and "push:alpha" not in again.ran, str(again)
    assert "pushing" not in again.output.lower(), str(again)
    sent = [line for line in registry.requests_for(repo)[len(before):]
            if "/blobs/" in line or "method=PUT" in line or "method=POST" in line or "method=PATCH" in line]
    assert not sent, "an up-to-date push talked about layers or wrote:\n" + "\n".join(sent)

    info = project.info("push:alpha")
    assert info.rc == 0 and "up-to-date" in info.output, str(info)


def test_push_is_stale_when_the_registry_lost_the_image(registry: LocalRegistry, on_registry: Project) -> None:
    """The registry's state is the truth, not .doit.db."""
    project, repo = on_registry, repo_of(on_registry, "alpha")
    digest = pushed(project, registry)
    assert registry.get_manifest(repo, digest, method="DELETE").status_code == 202
    assert registry.digest(repo, BUILD_TAG) is None
    assert pushed(project, registry) == digest


def test_push_is_stale_after_a_rebuild_and_info_names_the_digest(registry: LocalRegistry,
                                                                 on_registry: Project) -> None:
    project = on_registry
    old = pushed(project, registry)
    project.append("alpha/Dockerfile.custom", "RUN echo changed > /changed\n")
    assert_ok(project.run("build:alpha"))
    info = project.info("push:alpha")
    assert "up-to-date" not in info.output, str(info)
    one_line(info, old[:19])  # sha256: + 12 hex digits: the digest the registry holds, maybe shortened
    new = pushed(project, registry)
    assert new != old


def test_promote_tags_the_same_manifest(registry: LocalRegistry, on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    result = project.run("promote:alpha")
    assert_ok(result)
    assert {"push:alpha", "promote:alpha"} <= result.ran, str(result)
    digest = registry.digest(repo, BUILD_TAG)
    assert digest and registry.digest(repo, PROMOTED_TAG) == digest
    assert registry.tags(repo) == sorted([BUILD_TAG, PROMOTED_TAG])

    again = project.run("promote:alpha")
    assert_ok(again)
    assert {"push:alpha", "promote:alpha"} <= again.uptodate and not again.ran & {"push:alpha", "promote:alpha"}, str(again)


def test_promote_from_and_to_override_the_tags(registry: LocalRegistry, on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    digest = pushed(project, registry)
    result = project.run("promote:alpha", "--from", BUILD_TAG, "--to", "v1")
    assert_ok(result)
    assert "promote:alpha" in result.ran, str(result)
    assert registry.digest(repo, "v1") == digest
    assert PROMOTED_TAG not in registry.tags(repo)
    again = project.run("promote:alpha", "--from", BUILD_TAG, "--to", "v1")
    assert_ok(again)
    assert "promote:alpha" in again.uptodate, str(again)


def test_promote_of_an_unknown_source_tag_fails_clearly(registry: LocalRegistry, on_registry: Project) -> None:
    project = on_registry
    pushed(project, registry)
    result = project.run("promote:alpha", "--from", "no-such-tag", "--to", "v1")
    assert_clean_failure(result, "no-such-tag")
    assert "v1" not in registry.tags(repo_of(project, "alpha"))


def test_pull_brings_back_a_removed_image(docker_client: docker.DockerClient, registry: LocalRegistry,
                                          on_registry: Project) -> None:
    project = on_registry
    pushed(project, registry)
    ref = image_ref(project, "alpha", registry.host)
    local_id = image_id(docker_client, ref)
    docker_client.images.remove(ref, force=True)
    assert image_id(docker_client, ref) is None

    result = project.run("pull:alpha")
    assert_ok(result)
    assert "pull:alpha" in result.ran, str(result)
    assert image_id(docker_client, ref) == local_id


def test_pull_by_digest(docker_client: docker.DockerClient, registry: LocalRegistry, on_registry: Project) -> None:
    project = on_registry
    digest = pushed(project, registry)
    ref = image_ref(project, "alpha", registry.host)
    local_id = image_id(docker_client, ref)
    docker_client.images.remove(ref, force=True)

    result = project.run("pull:alpha", "--ref", digest)
    assert_ok(result)
    assert image_id(docker_client, f"{registry.host}/{repo_of(project, 'alpha')}@{digest}") == local_id


def test_pull_by_digest_says_the_mission_tag_stays_and_tag_moves_it(
    docker_client: docker.DockerClient, registry: LocalRegistry, on_registry: Project
) -> None:
    project = on_registry
    digest = pushed(project, registry)
    ref = image_ref(project, "alpha", registry.host)
    local_id = image_id(docker_client, ref)
    docker_client.images.remove(ref, force=True)

    result = project.run("pull:alpha", "--ref", digest)
    assert_ok(result)
    assert image_id(docker_client, ref) is None  # a pull by digest leaves the mission tag alone…
    assert one_line(result, ref, "not changed", "--tag")  # …and says so, naming the option that moves it

    tagged = project.run("pull:alpha", "--ref", digest, "--tag")
    assert_ok(tagged)
    assert image_id(docker_client, ref) == local_id
    assert one_line(tagged, ref, "--tag")


def test_pull_of_an_unknown_tag_fails_clearly(registry: LocalRegistry, on_registry: Project) -> None:
    project = on_registry
    pushed(project, registry)
    result = project.run("pull:alpha", "--ref", "no-such-tag")
    assert_clean_failure(result)
    one_line(result, "no-such-tag")


def test_delete_by_tag(registry: LocalRegistry, on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    pushed(project, registry)
    result = project.run("delete:alpha", "--", BUILD_TAG)
    assert_ok(result)
    assert registry.get_manifest(repo, BUILD_TAG).status_code == 404
    assert registry.tags(repo) == []


def test_delete_by_digest_and_tag_together(registry: LocalRegistry, on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    first = pushed(project, registry)
    assert_ok(project.run("promote:alpha", "--from", BUILD_TAG, "--to", "v1"))
    project.append("alpha/Dockerfile.custom", "RUN echo second > /second\n")
    second = pushed(project, registry)
    assert registry.tags(repo) == sorted([BUILD_TAG, "v1"]) and first != second

    result = project.run("delete:alpha", "--", "v1", second)
    assert_ok(result)
    assert registry.digest(repo, first) is None and registry.digest(repo, second) is None
    assert registry.tags(repo) == []


def test_delete_of_a_tag_that_shares_its_digest_refuses_unless_all_tags(registry: LocalRegistry,
                                                                        on_registry: Project) -> None:
    project, repo = on_registry, repo_of(on_registry, "alpha")
    digest = pushed(project, registry)
    assert_ok(project.run("promote:alpha", "--from", BUILD_TAG, "--to", "v1"))

    refused = project.run("delete:alpha", "--", "v1")
    assert_clean_failure(refused, "--all-tags")
    line = one_line(refused, f"{repo}:v1", f"{repo}:{BUILD_TAG}", "--all-tags")
    assert "Nothing was deleted" in line, line
    assert registry.tags(repo) == sorted([BUILD_TAG, "v1"]) and registry.digest(repo, "v1") == digest

    result = project.run("delete:alpha", "--all-tags", "--", "v1")
    assert_ok(result)
    assert registry.tags(repo) == [] and registry.digest(repo, digest) is None


def test_delete_without_references_says_what_to_give_naming_the_task_once(project: Project) -> None:
    result = project.run("delete:alpha")
    assert_clean_failure(result, "ERROR: delete:alpha: give the tags or digests to delete: doit delete:alpha -- TAG")


def test_delete_where_deletes_are_disabled_says_so(nodelete_registry: LocalRegistry, project: Project) -> None:
    use_generic_registry(project, nodelete_registry.host)
    digest = pushed(project, nodelete_registry)
    result = project.run("delete:alpha", "--", BUILD_TAG)
    assert_clean_failure(result, nodelete_registry.host)
    assert any(line_with(result.output, nodelete_registry.host, "delet", word)
               for word in ("disabled", "unsupported", "not enabled", "not allowed")), \
        f"no line says that {nodelete_registry.host} refuses deletes\n{result}"
    assert nodelete_registry.digest(repo_of(project, "alpha"), BUILD_TAG) == digest


# --------------------------------------------------------------------------
# basic auth
# --------------------------------------------------------------------------
@pytest.fixture
def on_auth_registry(project: Project, auth_registry: LocalRegistry) -> Project:
    use_generic_registry(project, auth_registry.host, username_env=USER_ENV, password_env=PASSWORD_ENV)
    return project


def test_login_and_push_with_credentials_from_the_environment(
    auth_registry: LocalRegistry, on_auth_registry: Project, docker_config
) -> None:
    project = on_auth_registry
    env = {USER_ENV: REGISTRY_USER, PASSWORD_ENV: REGISTRY_PASSWORD}
    login = project.run("login", env=env)
    assert_ok(login)
    assert_not_leaked(login, REGISTRY_PASSWORD)
    assert auth_registry.host in json.loads((docker_config / "config.json").read_text()).get("auths", {}), \
        "docker login wrote no credentials for the registry"

    result = project.run("push:alpha", env=env)
    assert_ok(result)
    assert_not_leaked(result, REGISTRY_PASSWORD)
    assert auth_registry.digest(repo_of(project, "alpha"), BUILD_TAG)


def test_wrong_password_fails_login_and_push_clearly(auth_registry: LocalRegistry, project: Project) -> None:
    # Slow backoff: a retried 401 would show in the time taken.
    use_generic_registry(project, auth_registry.host, username_env=USER_ENV, password_env=PASSWORD_ENV,
                         retries=2, backoff=3.0)
    env = {USER_ENV: REGISTRY_USER, PASSWORD_ENV: WRONG_PASSWORD}
    assert_ok(project.run("build:alpha", "test:alpha"))

    login = project.run("login", env=env)
    assert_clean_failure(login)
    unauthorized_line(login, auth_registry.host)
    assert_not_leaked(login, WRONG_PASSWORD, REGISTRY_PASSWORD)

    started = time.monotonic()
    push = project.run("push:alpha", env=env)
    elapsed = time.monotonic() - started
    assert_clean_failure(push)
    unauthorized_line(push, auth_registry.host)
    assert_not_leaked(push, WRONG_PASSWORD, REGISTRY_PASSWORD)
    assert elapsed < 3.0, f"push took {elapsed:.1f}s: was the 401 retried?\n{push}"
    assert auth_registry.tags(repo_of(project, "alpha")) == []


# --------------------------------------------------------------------------
# failures of the registry itself
# --------------------------------------------------------------------------
def test_push_to_a_stopped_registry_fails_fast(registry_factory: Callable[..., LocalRegistry],
                                               project: Project) -> None:
    stopped = registry_factory()
    use_generic_registry(project, stopped.host, retries=1, backoff=0.1)
    assert_ok(project.run("build:alpha", "test:alpha"))
    stopped.stop()

    started = time.monotonic()
    result = project.run("push:alpha", timeout=120)
    elapsed = time.monotonic() - started
    assert_clean_failure(result, stopped.host)
    assert_stage_result(result, "push:alpha", "FAILED")
    assert elapsed < 30, f"push to a stopped registry took {elapsed:.0f}s\n{result}"


def test_push_to_a_readonly_registry_shows_the_registry_message(readonly_registry: LocalRegistry,
                                                                project: Project) -> None:
    use_generic_registry(project, readonly_registry.host)
    result = project.run("push:alpha")
    # distribution's read-only mode answers uploads with 405 "Method not allowed".
    assert_clean_failure(result, "not allowed")
    assert_stage_result(result, "push:alpha", "FAILED")
    assert readonly_registry.tags(repo_of(project, "alpha")) == []
