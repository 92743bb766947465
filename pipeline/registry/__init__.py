"""Registries: the OCI Distribution HTTP API (any registry) and AWS ECR's control plane.

Only pipeline.registry.ecr imports boto3; all registry HTTP goes through one
requests session in pipeline.registry.http, with retries in one place.
"""
