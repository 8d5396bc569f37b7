"""C2SP tlog-policy files: which log key to trust and which witness cosignatures must agree.

Lines (blank lines and lines starting with ``#`` are ignored; a trailing URL is allowed and ignored
offline)::

    log <log verifier key> [<url>]
    witness <name> <cosignature/v1 verifier key> [<url>]
    group <name> all|any|<k> <member> <member> ...
    quorum <witness or group name>|none

Exactly one `log` line and one `quorum` line; names are unique; a group's members are witnesses
or groups defined above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.cosignature import CosignatureVerifier
from appliance.core.errors import NoteFormatError
from appliance.core.keys import NoteVerifier

MAX_POLICY_CHARS = 65_536


class PolicyError(NoteFormatError):
    """A tlog-policy file is malformed."""


@dataclass(frozen=True)
class Group:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed policy: the log key, witness keys by name, groups, and the quorum's name (None: none)."""

    log: NoteVerifier
    witnesses: dict[str, CosignatureVerifier]
    groups: dict[str, Group]
    quorum: str | None

    @classmethod
    def from_text(cls, text: object) -> Policy:
        if not isinstance(text, str) or len(text) > MAX_POLICY_CHARS:
            raise PolicyError(f"a policy is text of at most {MAX_POLICY_CHARS} characters", field="policy")
        log = None
        witnesses: dict[str, CosignatureVerifier] = {}
        groups: dict[str, Group] = {}
        quorum: str | None | bool = False
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            where = f"policy line {number}"
            keyword, args = words[0], words[1:]
            if keyword == "log" and 1 <= len(args) <= 2:
                if log is not None:
                    raise PolicyError(f"{where}: a second 'log' line", field="policy")
                log = NoteVerifier.from_text(args[0])
            elif keyword == "witness" and 2 <= len(args) <= 3:
                _new_name(args[0], witnesses, groups, where)
                witnesses[args[0]] = CosignatureVerifier.from_text(args[1])
            elif keyword == "group" and len(args) >= 3:
                groups[args[0]] = _group(args, witnesses, groups, where)
            elif keyword == "quorum" and len(args) == 1:
                if quorum is not False:
                    raise PolicyError(f"{where}: a second 'quorum' line", field="policy")
                if args[0] != "none" and args[0] not in witnesses and args[0] not in groups:
                    raise PolicyError(f"{where}: quorum names unknown {args[0]!r}", field="policy")
                quorum = None if args[0] == "none" else args[0]
            else:
                raise PolicyError(f"{where}: cannot read {line[:60]!r}", field="policy")
        if log is None or quorum is False:
            raise PolicyError("a policy needs one 'log' line and one 'quorum' line", field="policy")
        return cls(log, witnesses, groups, quorum)  # type: ignore[arg-type]

    def satisfied(self, cosigned: set[str]) -> bool:
        """Whether witnesses named in `cosigned` (their cosignatures verified) meet the quorum."""
        if self.quorum is None:
            return True

        def met(name: str) -> bool:
            group = self.groups.get(name)
            if group is None:
                return name in cosigned
            return sum(met(member) for member in group.members) >= group.threshold

        return met(self.quorum)


def _new_name(name: str, witnesses: dict, groups: dict, where: str) -> None:
    if name in witnesses or name in groups or name == "none":
        raise PolicyError(f"{where}: name {name!r} is already used", field="policy")


def _group(args: list[str], witnesses: dict, groups: dict, where: str) -> Group:
    name, rule, members = args[0], args[1], tuple(args[2:])
    _new_name(name, witnesses, groups, where)
    for member in members:
        if member not in witnesses and member not in groups:
            raise PolicyError(f"{where}: group member {member!r} is not defined above", field="policy")
    if len(set(members)) != len(members):
        raise PolicyError(f"{where}: a group member is listed twice", field="policy")
    if rule == "all":
        threshold = len(members)
    elif rule == "any":
        threshold = 1
    elif rule.isdigit() and 1 <= int(rule) <= len(members):
        threshold = int(rule)
    else:
        raise PolicyError(f"{where}: group threshold must be all, any or 1..{len(members)}", field="policy")
    return Group(name, threshold, members)
