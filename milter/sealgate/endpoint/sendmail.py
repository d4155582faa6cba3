"""``sealgate sendmail``: the sendmail(8) command line, so a MUA (mutt) can call it.

Understood: recipients as arguments, ``-t`` (recipients from To/Cc/Bcc, plus
any arguments, as Postfix does), ``-f ADDR`` (envelope sender), ``-i`` /
``-oi`` (a line with a single dot does not end the message: always true here,
since the message is read to end of file). Other sendmail options
(``-oem``, ``-odi``, ``-B8BITMIME``...) that MUAs pass are accepted and
ignored. Bcc is removed from the message (seal does that).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import EndpointError

# sendmail options that take a value in the next argument when not attached
_WITH_VALUE = frozenset({"-f", "-F", "-r", "-N", "-R", "-V", "-X", "-B", "-L", "-O", "-q", "-C"})


@dataclass
class SendmailArgs:
    extract: bool = False  # -t
    sender: str | None = None  # -f / -r
    recipients: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> SendmailArgs:
    """sendmail(8)-style arguments: options first, then recipients (``--`` ends options)."""
    out = SendmailArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            out.recipients.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            out.recipients.append(arg)
            continue
        if arg == "-t":
            out.extract = True
        elif arg in ("-i", "-oi"):
            pass  # read to end of file: a lone dot never ends the message
        elif arg[:2] in ("-f", "-r"):
            value = arg[2:]
            if not value:
                if i >= len(argv):
                    raise EndpointError(f"sendmail option {arg} needs an address")
                value, i = argv[i], i + 1
            out.sender = value.strip("<>")
        elif arg[:2] in _WITH_VALUE and len(arg) == 2:
            if i >= len(argv):
                raise EndpointError(f"sendmail option {arg} needs a value")
            out.ignored += [arg, argv[i]]
            i += 1
        else:
            out.ignored.append(arg)
    return out


def envelope_recipients(args: SendmailArgs, header_recipients: list[str]) -> list[str]:
    """-t: the header recipients plus the arguments; otherwise the arguments only."""
    recipients = [*header_recipients, *args.recipients] if args.extract else list(args.recipients)
    if not recipients:
        raise EndpointError("no recipients: give addresses as arguments, or -t to read To/Cc/Bcc")
    return list(dict.fromkeys(recipients))
