"""C2SP tlog-policy files: which log key to trust and which witness cosignatures must agree.

Lines (blank lines and lines starting with ``#`` are ignored; a trailing URL is allowed and ignored
offline)::

    log <log verifier key> [<url>] [<from> <until>]
    clock <cosignature/v1 verifier key> <from> <until>
    witness <name> <cosignature/v1 verifier key> [<url>]
    group <name> all|any|<k> <member> <member> ...
    quorum <witness or group name>|none

One `log` line per log key (a log that rotated its key has several; `<from> <until>` is its
validity window, as in a keys file, `appliance.core.key_history`), `clock` lines for the log's
timestamp keys (runlog's extension), and one `quorum` line; names are unique; a group's members
are witnesses or groups defined above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.core.cosignature import CosignatureVerifier
from appliance.core.errors import NoteFormatError
from appliance.core.key_history import KeysFileError, KeyWindow, TrustedKeys, window_from_words
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
    """A parsed policy: the log's keys (with windows), witness keys by name, groups, and the
    quorum's name (None: none)."""

    keys: TrustedKeys
    witnesses: dict[str, CosignatureVerifier]
    groups: dict[str, Group]
    quorum: str | None

    @property
    def log(self) -> NoteVerifier:
        """The current log key (the one valid last)."""
        return self.keys.current_log

    @classmethod
    def from_text(cls, text: object) -> Policy:
        if not isinstance(text, str) or len(text) > MAX_POLICY_CHARS:
            raise PolicyError(f"a policy is text of at most {MAX_POLICY_CHARS} characters", field="policy")
        logs: list[KeyWindow] = []
        clocks: list[KeyWindow] = []
        witnesses: dict[str, CosignatureVerifier] = {}
        groups: dict[str, Group] = {}
        quorum: str | None | bool = False
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            where = f"policy line {number}"
            keyword, args = words[0], words[1:]
            if keyword == "log" and 1 <= len(args) <= 4:
                logs.append(_log_line(args, where))
            elif keyword == "clock" and len(args) == 3:
                clocks.append(_windowed("clock", args, where))
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
        if not logs or quorum is False:
            raise PolicyError("a policy needs a 'log' line and one 'quorum' line", field="policy")
        try:
            keys = TrustedKeys(tuple(logs), tuple(clocks))
        except KeysFileError as error:
            raise PolicyError(f"policy: {error}", field="policy") from None
        return cls(keys, witnesses, groups, quorum)  # type: ignore[arg-type]

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


def _log_line(args: list[str], where: str) -> KeyWindow:
    """``log <key> [<url>] [<from> <until>]``: the window is the last two words when there are three or four."""
    if len(args) >= 3:
        return _windowed("log", [args[0], *args[-2:]], where)
    return KeyWindow(NoteVerifier.from_text(args[0]))


def _windowed(role: str, args: list[str], where: str) -> KeyWindow:
    try:
        return window_from_words([role, *args], where)
    except KeysFileError as error:
        raise PolicyError(str(error), field="policy") from None


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
