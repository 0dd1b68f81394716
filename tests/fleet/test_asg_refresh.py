"""Instance refresh: every instance replaced by the new template version while the healthy
targets in the target group never drop below the minimum healthy percentage; cancel."""

from __future__ import annotations

import asyncio

import pytest
from fleet_helpers import fast_target_group, get, in_service, server_template, until

from tierlake.fleet.asg import AutoScalingError, AutoScalingGroup
from tierlake.fleet.refresh import RefreshStatus

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_refresh_keeps_min_healthy_and_replaces_every_instance() -> None:
    tg = fast_target_group(drain=0.3)
    await tg.start()
    group = AutoScalingGroup("app", server_template("v1"), min_size=2, max_size=3,
                             target_groups=[tg], health_check_type="ELB",
                             health_check_grace_period=5, default_instance_warmup=0.3,
                             check_interval=0.1, stop_grace=2.0)
    await group.start()
    lowest = {"healthy": 99}

    async def watch() -> None:
        while True:
            lowest["healthy"] = min(lowest["healthy"], tg.healthy_count)
            await asyncio.sleep(0.01)

    try:
        await until(lambda: tg.healthy_count == 2, what="two healthy targets")
        old = {i.instance_id for i in group.instances}
        watcher = asyncio.create_task(watch())
        v2 = group.template.new_version(environment={"VERSION": "v2"})
        refresh = group.start_instance_refresh(min_healthy_percentage=100, template=v2)
        assert refresh.describe()["Preferences"] == {"MinHealthyPercentage": 100,
                                                     "InstanceWarmup": 0.3}
        with pytest.raises(AutoScalingError, match="already in progress"):
            group.start_instance_refresh()
        await until(lambda: refresh.done, timeout=60, what="the refresh to finish")
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        assert refresh.status == RefreshStatus.SUCCESSFUL, refresh.status_reason
        assert refresh.percentage_complete == 100
        assert lowest["healthy"] >= 2, "healthy targets dropped below the minimum"
        assert not old & {i.instance_id for i in group.instances}
        assert [i.template.version for i in group.instances] == [2, 2]
        for inst in in_service(group):
            assert (await get(inst.host, inst.port))[1].startswith("v2 ")
        await until(lambda: len(group.instances) == 2 and group.surge == 0)
        causes = [a.cause for a in group.activities]
        assert sum("in response to an instance refresh" in c for c in causes) >= 4
        assert group.describe()["InstanceRefresh"]["Status"] == "Successful"  # type: ignore[index]
    finally:
        await group.stop()
        await tg.stop()


async def test_cancel_and_a_refresh_without_room() -> None:
    group = AutoScalingGroup("app", server_template("v1"), min_size=2, max_size=2,
                             check_interval=0.1, stop_grace=2.0)
    with pytest.raises(AutoScalingError, match="raise max_size above 2"):
        group.start_instance_refresh(min_healthy_percentage=100)
    with pytest.raises(AutoScalingError, match="No in progress or pending Instance Refresh"):
        await group.cancel_instance_refresh()
    group.update(max_size=3)
    await group.start()
    try:
        await until(lambda: len(in_service(group)) == 2)
        refresh = group.start_instance_refresh(min_healthy_percentage=100,
                                               instance_warmup=3600)
        await until(lambda: group.surge == 1 and len(group.instances) == 3,
                    what="one instance launched first")
        await group.cancel_instance_refresh()
        assert refresh.status == RefreshStatus.CANCELLED
        await until(lambda: len(group.instances) == 2, what="back to the desired capacity")
    finally:
        await group.stop()
