"""Durable host state: deployment groups' pointers and history, manifests, reports, in-flight markers, locks."""

from agent.state.records import DeploymentInfo, DeploymentRecord, GroupState, InflightMarker
from agent.state.store import StateStore

__all__ = ["DeploymentInfo", "DeploymentRecord", "GroupState", "InflightMarker", "StateStore"]
