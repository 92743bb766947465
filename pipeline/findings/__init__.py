"""Vulnerability scanning: findings from ECR or an offline OSV database, Ubuntu CVE status, policy and report."""
