"""Per-invocation CLI state shared by every command (the global -u/-p flags)."""

from __future__ import annotations

from dataclasses import dataclass

import click

from ktrdr.cli.target import ApiTarget, resolve_target


@dataclass
class CliState:
    url_flag: str | None = None
    port_flag: str | None = None

    def target(self) -> ApiTarget:
        return resolve_target(url_flag=self.url_flag, port_flag=self.port_flag)


pass_state = click.make_pass_decorator(CliState, ensure=True)
