"""The build context the pipeline writes itself: exactly the files its key lists (see collect.py)."""

# The name the rendered Dockerfile has inside the context the pipeline sends (send.py); here, so the
# engine can name it without loading the context model.
DOCKERFILE_NAME = ".pipeline.Dockerfile"
