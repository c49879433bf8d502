"""Roles: a named system prompt, with the request settings and the profile it runs with.

A role is a layer of the settings merge (config.merge): defaults < the file < the
profile < the role < the environment < flags. Four are built in (`shell`, `code`,
`translate`, `describe`); a `[roles.NAME]` table in the config file defines more, or changes a
built-in one key by key. Pure: standard library, no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatcli.schema import ROLE_REQUEST_KEYS

# Written in English, which models follow best; each says to answer in the user's language.
BUILTIN: dict[str, dict[str, str]] = {
    "shell": {
        "system": (
            "You turn a request into exactly one shell command for {shell} on {os}. Reply with the "
            "command only: no explanation, no Markdown, no code fence, no leading $ or prompt. If it "
            "takes several steps, join them on one line with && or a pipe. Prefer standard tools that "
            "are installed by default, and safe forms (no sudo, no deleting) unless the request asks "
            "for them. If the request is not something a command can do, reply with a comment line "
            "starting with # that says why, in the language of the request."),
    },
    "code": {
        "system": (
            "You write code. Reply with the code only: no explanation before or after it, no Markdown "
            "and no code fence. Comments inside the code may explain what is not obvious, in the "
            "language of the request."),
    },
    "translate": {
        "system": (
            "You translate. Translate the text you are given into English; if it is already in "
            "English, translate it into Simplified Chinese. Keep its meaning, tone and formatting "
            "(Markdown, code and line breaks stay as they are). Reply with the translation only: "
            "no notes, no quotes around it, no explanation."),
    },
    "describe": {
        "system": (
            "Explain the shell command you are given in a few short lines: what it does as a whole, "
            "what each part that matters does, and anything risky about it (deleting or overwriting "
            "files, sudo, network access). Use plain text or a short list. Answer in the language of "
            "the request."),
    },
}


@dataclass(frozen=True)
class Role:
    name: str
    system: str | None = None
    template: str | None = None  # the user message of a one-shot question, with {input}
    profile: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # model, temperature, ... as written
    origin: str = "built in"  # or the config file it comes from

    @property
    def first_line(self) -> str:
        line = next((line for line in (self.system or "").split("\n") if line.strip()), "")
        return " ".join(line.split())

    def layer(self, env: Mapping[str, str], platform: str) -> dict[str, Any]:
        """The role's values as Settings keys: its system prompt (with {os} and {shell} filled in)
        and its request settings."""
        values: dict[str, Any] = dict(self.settings)
        if self.system is not None:
            values["system_prompt"] = fill(self.system, env, platform)
        return values

    def message(self, text: str) -> str:
        """The user message of a one-shot question: the template filled in, or the text."""
        return self.template.replace("{input}", text) if self.template else text


def all_roles(data: Mapping[str, Any], origin: str = "the config file") -> dict[str, Role]:
    """The built-in roles, then the config file's [roles.NAME] tables: a table named like a
    built-in role changes it key by key."""
    tables: dict[str, dict[str, Any]] = {name: dict(table) for name, table in BUILTIN.items()}
    configured = data.get("roles", {})
    for name, table in configured.items():
        tables[name] = {**tables.get(name, {}), **table}
    return {name: Role(name, system=table.get("system"), template=table.get("template"),
                       profile=table.get("profile"),
                       settings={**{k: table[k] for k in ROLE_REQUEST_KEYS if k in table},
                                 **{key: tuple(table[key]) for key in ("tools", "mcp") if key in table}},
                       origin=origin if name in configured else "built in")
            for name, table in tables.items()}


OS_NAMES = {"linux": "Linux", "darwin": "macOS", "win32": "Windows", "cygwin": "Windows (Cygwin)",
            "freebsd": "FreeBSD", "openbsd": "OpenBSD"}


def fill(text: str, env: Mapping[str, str], platform: str) -> str:
    """{os} and {shell} in a role's text: the operating system's name and the user's shell's
    name (never a path, the environment or history)."""
    system = next((name for prefix, name in OS_NAMES.items() if platform.startswith(prefix)), platform)
    shell = os.path.basename(env.get("SHELL", "")) or ("cmd" if platform == "win32" else "sh")
    return text.replace("{os}", system).replace("{shell}", shell)
