"""AWS ECR's control plane through boto3: authorization tokens, retag, delete, mutability.

Credentials come from boto3's standard chain; with ``role_arn`` the role is
assumed through STS first (replacing awsudo). Temporary credentials stay in
memory.  The only module that imports boto3: the secrets tasks' STS AssumeRole
(:func:`assume_role`) lives here too.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

from pipeline.errors import RegistryAuthError, RegistryError, RegistryUnavailable, SecretsError
from pipeline.registry.credentials import Credentials
from pipeline.settings import Registry, Secrets

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)

SESSION_NAME = "jupyterhub-image-pipeline"
SECRETS_SESSION_NAME = "jupyterhub-image-pipeline-secrets"  # secrets_*: STS AssumeRole for git and sops


class Ecr:
    """One ECR registry (account + region)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from botocore.config import Config  # boto3 is imported only when ECR is used: it is slow to load

            config = Config(retries={"max_attempts": self.registry.retries + 1, "mode": "standard"})
            session = self._session()
            self._client = _call(
                self.registry, "create an ECR client",
                lambda: session.client("ecr", endpoint_url=self.registry.endpoint_url, config=config),
            )
        return self._client

    def _session(self) -> boto3.Session:
        import boto3

        session = boto3.Session(region_name=self.registry.region)
        if not self.registry.role_arn:
            return session
        sts = session.client("sts", endpoint_url=self.registry.sts_endpoint_url)
        answer = _call(
            self.registry, f"assume role {self.registry.role_arn}",
            lambda: sts.assume_role(RoleArn=self.registry.role_arn, RoleSessionName=SESSION_NAME),
        )
        creds = answer["Credentials"]
        log.info("ecr: assumed %s", self.registry.role_arn)
        return boto3.Session(
            region_name=self.registry.region,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def credentials(self) -> Credentials:
        """Docker credentials from ECR's authorization token (user AWS)."""
        answer = _call(
            self.registry, "get an authorization token",
            lambda: self.client.get_authorization_token(registryIds=[self.registry.account]),
        )
        data = answer["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        return Credentials(user, password)

    def mutable(self, repo: str) -> bool:
        answer = _call(self.registry, f"describe repository {repo}", lambda: self.client.describe_repositories(
            registryId=self.registry.account, repositoryNames=[repo]))
        return answer["repositories"][0].get("imageTagMutability", "MUTABLE") != "IMMUTABLE"

    def image(self, repo: str, reference: str) -> dict[str, Any] | None:
        """batch_get_image for a tag or digest: {imageManifest, imageManifestMediaType, imageId}; None when absent."""
        image_id = {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
        answer = _call(self.registry, f"get image {image_name(repo, reference)}", lambda: self.client.batch_get_image(
            registryId=self.registry.account, repositoryName=repo, imageIds=[image_id],
            acceptedMediaTypes=[
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
            ],
        ))
        images = answer.get("images") or []
        return images[0] if images else None

    def put_tag(self, repo: str, tag: str, image: dict[str, Any]) -> None:
        """Give an existing manifest another tag (no layer traffic).

        Raises:
            RegistryError: the repository is immutable and the tag points elsewhere.
        """
        kwargs = {
            "registryId": self.registry.account,
            "repositoryName": repo,
            "imageManifest": image["imageManifest"],
            "imageTag": tag,
            "imageDigest": image["imageId"]["imageDigest"],
        }
        if image.get("imageManifestMediaType"):
            kwargs["imageManifestMediaType"] = image["imageManifestMediaType"]
        import botocore.exceptions

        try:
            self.client.put_image(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ImageAlreadyExistsException":
                return  # the tag already points at this manifest
            if code == "ImageTagAlreadyExistsException":
                raise RegistryError(
                    f"ECR repository {repo} is immutable and tag {tag} already points to another image; "
                    "delete that tag first or use another tag"
                ) from None
            raise _translate(self.registry, f"put tag {tag} on {repo}", exc) from None

    def delete(self, repo: str, references: list[str]) -> list[str]:
        """batch_delete_image by tags and digests; returns the failures as text."""
        ids = [{"imageDigest": r} if r.startswith("sha256:") else {"imageTag": r} for r in references]
        answer = _call(self.registry, f"delete from {repo}", lambda: self.client.batch_delete_image(
            registryId=self.registry.account, repositoryName=repo, imageIds=ids))
        return [f"{_named(repo, f.get('imageId') or {})}: {f.get('failureReason') or f.get('failureCode')}"
                for f in answer.get("failures") or []]


def image_name(repo: str, reference: str) -> str:
    """``repo@sha256:…`` for a digest, ``repo:tag`` for a tag."""
    return f"{repo}@{reference}" if reference.startswith("sha256:") else f"{repo}:{reference}"


def _named(repo: str, image_id: dict[str, str]) -> str:
    """An ECR imageId ({imageDigest, imageTag}) as ``repo@sha256:…`` or ``repo:tag``, never as a dict."""
    if image_id.get("imageDigest"):
        return image_name(repo, image_id["imageDigest"])
    return image_name(repo, image_id.get("imageTag") or "?")


def _call(registry: Registry, what: str, fn: Any) -> Any:
    import botocore.exceptions

    try:
        return fn()
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise _translate(registry, what, exc) from None


def _translate(registry: Registry, what: str, exc: Exception) -> Exception:
    import botocore.exceptions

    where = f"ECR {registry.account} in {registry.region}" + (f" at {registry.endpoint_url}" if registry.endpoint_url else "")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return RegistryAuthError(f"{where}: no AWS credentials to {what}; configure them (boto3's standard chain)")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)):
        return RegistryUnavailable(f"{where}: cannot {what}: {exc}")
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code in {"AccessDeniedException", "UnrecognizedClientException", "ExpiredTokenException", "AccessDenied"}:
            return RegistryAuthError(f"{where}: cannot {what}: {code}: {message}")
        return RegistryError(f"{where}: cannot {what}: {code}: {message}")
    return RegistryError(f"{where}: cannot {what}: {exc}")


def assume_role(secrets: Secrets) -> dict[str, str]:
    """STS AssumeRole with boto3's standard credential chain.

    Raises:
        SecretsError: no credentials, STS unreachable or the role refused.
    """
    import boto3
    import botocore.exceptions

    where = f" at {secrets.sts_endpoint_url}" if secrets.sts_endpoint_url else ""
    try:
        sts = boto3.Session(region_name=secrets.region).client("sts", endpoint_url=secrets.sts_endpoint_url)
        answer = sts.assume_role(RoleArn=secrets.role_arn, RoleSessionName=SECRETS_SESSION_NAME)
    except botocore.exceptions.NoCredentialsError:
        raise SecretsError(f"no AWS credentials to assume {secrets.role_arn} (secrets.role_arn); configure them "
                           "(boto3's standard chain: environment, ~/.aws, instance role)") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError) as exc:
        raise SecretsError(f"cannot reach STS{where} to assume {secrets.role_arn}: {exc}") from None
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise SecretsError(f"STS{where} refused to assume {secrets.role_arn} (secrets.role_arn): "
                           f"{error.get('Code', '')}: {error.get('Message', '')}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise SecretsError(f"cannot assume {secrets.role_arn} through STS{where}: {exc}") from None
    log.info("secrets: assumed %s (temporary credentials go to git and sops only)", secrets.role_arn)
    creds = answer["Credentials"]
    return {k: str(creds[k]) for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
