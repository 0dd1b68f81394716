"""Lifecycle hooks: an instance waits in ``Pending:Wait`` or ``Terminating:Wait`` for you.

Modelled on EC2 Auto Scaling lifecycle hooks (``PutLifecycleHook``,
``CompleteLifecycleAction``, ``RecordLifecycleActionHeartbeat``): a hook on
``autoscaling:EC2_INSTANCE_LAUNCHING`` or ``autoscaling:EC2_INSTANCE_TERMINATING`` holds
the instance until someone completes the action with ``CONTINUE`` or ``ABANDON``, or until
the heartbeat timeout (default 3600 s, AWS's) passes and the hook's default result
(default ``ABANDON``) applies; a heartbeat restarts the timeout. On launch, ``ABANDON``
terminates the instance; on termination the instance stops either way, and ``ABANDON``
skips the remaining hooks. See "Amazon EC2 Auto Scaling lifecycle hooks" and "Complete a
lifecycle action" in the EC2 Auto Scaling User Guide.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
CONTINUE, ABANDON = "CONTINUE", "ABANDON"


class LifecycleError(ValueError):
    """A lifecycle request Auto Scaling would refuse (``ValidationError``)."""

    code = "ValidationError"


@dataclass(frozen=True)
class LifecycleHook:
    """``PutLifecycleHook``'s parameters."""

    name: str
    transition: str
    heartbeat_timeout: float = 3600.0
    default_result: str = ABANDON

    def __post_init__(self) -> None:
        if self.transition not in (LAUNCHING, TERMINATING):
            raise LifecycleError(f"lifecycle hook {self.name}: the transition must be "
                                 f"{LAUNCHING} or {TERMINATING} (got {self.transition!r})")
        if self.default_result not in (CONTINUE, ABANDON):
            raise LifecycleError(f"lifecycle hook {self.name}: the default result must be "
                                 f"CONTINUE or ABANDON (got {self.default_result!r})")
        if self.heartbeat_timeout <= 0:
            raise LifecycleError(f"lifecycle hook {self.name}: the heartbeat timeout must be "
                                 "positive (AWS: 30 to 7200 s)")


@dataclass
class LifecycleAction:
    """One instance waiting on one hook; ``token`` is its LifecycleActionToken."""

    hook: LifecycleHook
    instance_id: str
    deadline: float
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    result: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


Notify = Callable[[LifecycleAction], Awaitable[None] | None]


class LifecycleHooks:
    """A group's hooks and the actions waiting on them."""

    def __init__(self, group: str, clock: Callable[[], float] = time.time) -> None:
        self.group, self.clock = group, clock
        self.hooks: dict[str, LifecycleHook] = {}
        self.pending: dict[tuple[str, str], LifecycleAction] = {}
        self._listeners: list[Notify] = []

    def put(self, hook: LifecycleHook) -> None:
        self.hooks[hook.name] = hook

    def delete(self, name: str) -> None:
        self.hooks.pop(name, None)

    def on_action(self, callback: Notify) -> None:
        """Be told of each action as it starts (the hook's notification target)."""
        self._listeners.append(callback)

    def has(self, transition: str) -> bool:
        return any(h.transition == transition for h in self.hooks.values())

    async def run(self, instance_id: str, transition: str) -> str:
        """Wait on each hook of the transition in turn; CONTINUE, or ABANDON at the first
        abandoned one."""
        for hook in [h for h in self.hooks.values() if h.transition == transition]:
            action = LifecycleAction(hook, instance_id, self.clock() + hook.heartbeat_timeout)
            self.pending[(hook.name, instance_id)] = action
            log.info("asg.lifecycle_action", group=self.group, hook=hook.name,
                     instance=instance_id, transition=transition)
            try:
                for listener in self._listeners:
                    outcome = listener(action)
                    if inspect.isawaitable(outcome):
                        await outcome
                result = await self._wait(action)
            finally:
                self.pending.pop((hook.name, instance_id), None)
            if result == ABANDON:
                return ABANDON
        return CONTINUE

    async def _wait(self, action: LifecycleAction) -> str:
        while True:
            remaining = action.deadline - self.clock()
            if remaining <= 0:
                log.info("asg.lifecycle_timeout", group=self.group, hook=action.hook.name,
                         instance=action.instance_id, result=action.hook.default_result)
                return action.hook.default_result
            with contextlib.suppress(TimeoutError):  # a heartbeat may move the deadline
                async with asyncio.timeout(remaining):
                    return await asyncio.shield(action.result)

    def _find(self, hook_name: str, instance_id: str, token: str | None) -> LifecycleAction:
        action = self.pending.get((hook_name, instance_id))
        if action is None or (token is not None and token != action.token):
            raise LifecycleError(f"No active Lifecycle Action found with instance ID "
                                 f"{instance_id} for hook {hook_name} of group {self.group}")
        return action

    def complete(self, hook_name: str, instance_id: str, result: str,
                 token: str | None = None) -> None:
        if result not in (CONTINUE, ABANDON):
            raise LifecycleError(f"the lifecycle action result must be CONTINUE or ABANDON "
                                 f"(got {result!r})")
        action = self._find(hook_name, instance_id, token)
        if not action.result.done():
            action.result.set_result(result)

    def heartbeat(self, hook_name: str, instance_id: str, token: str | None = None) -> float:
        """Restart the heartbeat timeout; returns the new deadline."""
        action = self._find(hook_name, instance_id, token)
        action.deadline = self.clock() + action.hook.heartbeat_timeout
        return action.deadline
