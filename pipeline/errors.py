"""The one exception tree of the pipeline.

Every error a user can cause or fix (bad config, a missing image, a daemon or
service that is down, a failing build) is a :class:`PipelineError`.  Its message
is one line that names the file, key, image or host and says what to do next.
The task adapters turn it into ``doit.exceptions.TaskFailed`` at one boundary;
anything else is a real bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a known failure whose ``str()`` is the one-line user message."""


class ConfigError(PipelineError):
    """The configuration (pipeline.yaml, deployment.yaml, overrides) is invalid."""


class EngineUnavailable(PipelineError):
    """The Docker daemon cannot be reached."""


class ImageNotFound(PipelineError):
    """An image the stage needs does not exist locally (or cannot be pulled)."""


class BuildFailed(PipelineError):
    """An image build failed; the message carries the failing step and output tail.

    ``step`` is the 1-based number of the failing instruction when the builder said it.
    """

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


class CommandFailed(PipelineError):
    """An external command exited non-zero or could not be started."""


class CommandTimedOut(CommandFailed):
    """An external command was stopped because it ran longer than its timeout."""


class LockTimeout(PipelineError):
    """Another pipeline run holds the project lock for too long."""


class RegistryError(PipelineError):
    """A registry (OCI Distribution or ECR) refused a request."""


class RegistryUnavailable(RegistryError):
    """A registry or its control plane cannot be reached, after bounded retries."""


class RegistryAuthError(RegistryError):
    """A registry refused the credentials (401) or the operation (403)."""


class ScanIncomplete(PipelineError):
    """A vulnerability scan could not be done; it never passes the gate (doit exit code 2)."""

    incomplete = True


class VerificationFailed(PipelineError):
    """A signature, subject or input-key check of an image's attestations failed (exit 1)."""


class AttestationsUnavailable(PipelineError):
    """An image's attestations could not be fetched: registry down, refused, or blobs missing (exit 2)."""

    incomplete = True


class SecretsError(PipelineError):
    """A secrets operation cannot be done; the message says what to do."""
