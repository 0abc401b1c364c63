"""Watchers of a deployment's report (daemon sinks, ``command wait``) never see a final Failed status before the
automatic rollback's events are attached."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.wiring import build_engine
from agent.config import AgentConfig
from agent.engine.deployment import DeploymentRequest
from agent.model.revision import LocalRevision
from tests.fakes.revisions import make_revision

pytestmark = pytest.mark.integration


def test_failed_status_is_published_only_with_the_rollback(tmp_path: Path, monkeypatch) -> None:
    markers = tmp_path / "markers.log"
    markers.touch()
    monkeypatch.setenv("BERTH_TEST_MARKERS", str(markers))
    dest = tmp_path / "installed"
    good = make_revision(tmp_path / "good", version="v1", destination=dest)
    bad = make_revision(tmp_path / "bad", version="v2", destination=dest,
                        scripts={"ValidateService": "#!/bin/sh\necho unhealthy\nexit 1\n"},
                        appspec_extra={"berth": {"auto_rollback": True}})
    seen: list[dict] = []
    engine = build_engine(AgentConfig(root=tmp_path / "state"), None, on_update=lambda r: seen.append(r.to_dict()))

    def request(rev: Path, dep: str) -> DeploymentRequest:
        return DeploymentRequest(deployment_id=dep, application="app", deployment_group="g",
                                 revision=LocalRevision(path=str(rev), bundle_type="directory"))

    assert engine.deploy(request(good, "d-GOOD")).status == "Succeeded"
    seen.clear()
    final = engine.deploy(request(bad, "d-BAD")).to_dict()
    assert final["status"] == "Failed"
    assert final["rolled_back_to"] == "d-GOOD"
    assert final["rollback"]["status"] == "Succeeded"
    bad_updates = [r for r in seen if r["deployment_id"] == "d-BAD"]
    failed = [r for r in bad_updates if r["status"] == "Failed"]
    assert failed and all(r.get("rolled_back_to") == "d-GOOD" for r in failed)
    assert any(r.get("rolling_back_to") == "d-GOOD" and r["status"] == "InProgress" for r in bad_updates)
    assert (dest / "VERSION").read_text() == "v1\n"
