"""Agents as data: the YAML schema (``apiVersion: stigmer.ai/v1``, ``kind: Agent``) and its loader.

Imports neither Temporal nor Docker: the CLI validates with it, the server
stores what it validates, and the runner receives a snapshot of it.
"""

from stigmer.spec.models import AgentDoc, AgentSpec, ModelSettingsSpec, SecretRef, TestStep

__all__ = ["AgentDoc", "AgentSpec", "ModelSettingsSpec", "SecretRef", "TestStep"]
