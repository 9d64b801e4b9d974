"""The release history: numbered releases, a baseline before the first deploy, the last good one to go back to."""

from pathlib import Path

from ops.releases import ABORTED, FAILED, PASSED, SUCCEEDED, ReleaseHistory


def test_a_canary_before_the_first_rollout_still_leaves_a_baseline_to_go_back_to(tmp_path: Path) -> None:
    history = ReleaseHistory(tmp_path)
    history.finish(history.begin("canary", tmp_path / "candidate", "a-ref"), ABORTED, "prices diverge")
    history.finish(history.begin("canary", tmp_path / "candidate", "a-ref"), PASSED)
    history.ensure_baseline(tmp_path / "running")
    promoted = history.finish(history.begin("rollout", tmp_path / "candidate", "a-ref"), SUCCEEDED)
    back_to = history.last_good(before=promoted.number)
    assert back_to is not None and (back_to.kind, back_to.code) == ("baseline", str(tmp_path / "running"))


def test_failed_releases_and_canaries_are_never_gone_back_to(tmp_path: Path) -> None:
    history = ReleaseHistory(tmp_path)
    history.ensure_baseline(tmp_path / "v1")
    first = history.finish(history.begin("rollout", tmp_path / "v2", None), SUCCEEDED)
    history.finish(history.begin("rollout", tmp_path / "v3", None), FAILED, "not ready within 20s")
    history.finish(history.begin("canary", tmp_path / "v4", None), PASSED)
    current = history.finish(history.begin("rollout", tmp_path / "v5", None), SUCCEEDED)
    assert history.last_good() == current
    assert history.last_good(before=current.number) == first
    history.ensure_baseline(tmp_path / "elsewhere")  # only ever once
    assert [r.kind for r in history.all()].count("baseline") == 1
    assert [r.number for r in history.all()] == [0, 1, 2, 3, 4]
