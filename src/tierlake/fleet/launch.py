"""Launch templates: how an Auto Scaling group starts an instance.

The EC2 launch template (``CreateLaunchTemplate`` / ``CreateLaunchTemplateVersion``) keeps,
here, a name, a version number and what an instance runs: a command whose ``{port}``
placeholder becomes the instance's free port, and an environment (values may hold ``{port}``
too). A new version is a new template object with the same name; an instance remembers
the version it was launched from, which the termination policy and instance refresh read.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

PORT_PLACEHOLDER = "{port}"


def new_instance_id() -> str:
    """An EC2-style instance id: ``i-`` and 17 hexadecimal digits."""
    return "i-" + secrets.token_hex(9)[:17]


@dataclass(frozen=True)
class LaunchTemplate:
    """What an instance runs: ``command`` with ``{port}``, and ``environment`` over this
    process's own environment (unless ``inherit_environment`` is False)."""

    name: str
    command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    version: int = 1
    host: str = "127.0.0.1"
    inherit_environment: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a launch template needs a name")
        object.__setattr__(self, "command", tuple(self.command))
        if not self.command:
            raise ValueError(f"launch template {self.name}: the command is empty; give the "
                             "program and its arguments, e.g. [sys.executable, '-m', 'http.server',"
                             " '{port}']")
        if not any(PORT_PLACEHOLDER in a for a in self.command):
            raise ValueError(f"launch template {self.name}: no argument of the command holds "
                             f"{PORT_PLACEHOLDER}; the instance must listen on the port the "
                             "group gives it (e.g. '--port', '{port}')")
        if self.version < 1:
            raise ValueError(f"launch template {self.name}: versions start at 1")

    @property
    def label(self) -> str:
        """``name:version``, as DescribeAutoScalingInstances names a template."""
        return f"{self.name}:{self.version}"

    def argv(self, port: int) -> list[str]:
        return [a.replace(PORT_PLACEHOLDER, str(port)) for a in self.command]

    def env(self, port: int) -> dict[str, str]:
        base = dict(os.environ) if self.inherit_environment else {}
        base.update({k: v.replace(PORT_PLACEHOLDER, str(port))
                     for k, v in self.environment.items()})
        return base

    def new_version(self, *, command: Sequence[str] | None = None,
                    environment: Mapping[str, str] | None = None) -> LaunchTemplate:
        """The next version (``CreateLaunchTemplateVersion``), changing what is given."""
        return replace(self, version=self.version + 1,
                       command=tuple(command) if command is not None else self.command,
                       environment=dict(environment) if environment is not None
                       else self.environment)
