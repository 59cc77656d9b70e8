"""What a cluster check found: one Finding per problem or passed check, gathered in a report."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Level = Literal["ok", "warning", "error"]

EXIT_OK = 0
EXIT_PROBLEMS = 2

_SENSITIVE_WORDS = ("password", "passwd", "secret", "token", "credential", "private_key")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/@\s]*@")


@dataclass(frozen=True)
class Finding:
    """One result: `where` is a key path (e.g. `available_node_types.gpu_worker.resources.GPU`)
    or the name of a check (`tracking-uri`); `fix` says how to repair an error or warning."""

    level: Level
    where: str
    message: str
    fix: str = ""

    def render(self) -> str:
        head = f"  {self.level:<8} {self.where}: {redact(self.message)}"
        if self.fix:
            return f"{head}\n  {'':<8} fix: {redact(self.fix)}"
        return head


@dataclass
class CheckReport:
    """All findings of one `dhkd cluster check` run, in the order the checks ran."""

    source: str
    findings: list[Finding] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # values never to print, masked in render

    def extend(self, findings: Iterable[Finding]) -> None:
        self.findings.extend(findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_PROBLEMS

    def render(self) -> str:
        lines = [f"dhkd cluster check: {self.source}"]
        lines += [mask(f.render(), self.secrets) for f in self.findings]
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "ready" if self.ok else "not ready"
        lines.append(
            f"result: {n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}"
            f" - {verdict} (exit {self.exit_code})"
        )
        return "\n".join(lines)


def key_path(parts: Sequence[str | int]) -> str:
    """Dotted key path: ["available_node_types", "gpu_worker", "resources", "GPU"] ->
    "available_node_types.gpu_worker.resources.GPU"; list indices become [i]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def is_sensitive(parts: Sequence[str | int]) -> bool:
    """True when a key path names something whose value must never be printed."""
    return any(isinstance(p, str) and any(w in p.lower() for w in _SENSITIVE_WORDS) for p in parts)


def redact(text: str) -> str:
    """Replace the password of every `scheme://user:password@host` in `text` with ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def redact_uri(uri: str) -> str:
    """A URI safe to print: the password (if any) becomes ***, query strings are dropped
    (they may carry tokens)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "..." if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret (4+ characters) replaced by ***."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
