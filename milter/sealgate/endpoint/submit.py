"""Hand a sealed message to an SMTP server (``--submit smtp://HOST:PORT``).

STARTTLS is used whenever the server offers it (RFC 3207), with certificate
verification against the system's CAs or ``--submit-ca FILE``; ``smtps://``
is implicit TLS (RFC 8314). A refused recipient is an error naming it.
"""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from .errors import EndpointError, SubmitTemporary

DEFAULT_PORTS = {"smtp": 25, "submission": 587, "smtps": 465}


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of smtp://HOST[:PORT], submission://..., smtps://..."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise EndpointError(f"--submit {url!r} is not smtp://HOST[:PORT], submission://HOST[:PORT] "
                            "or smtps://HOST[:PORT]")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise EndpointError(f"--submit {url!r} has a bad port") from None
    return parts.scheme, parts.hostname, port


def submit(url: str, message: bytes, sender: str, recipients: list[str], *,
           ca_file: Path | None = None, timeout: float = 60.0) -> bool:
    """Send ``message``; True when the session was protected by TLS."""
    scheme, host, port = parse_url(url)
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    try:
        client: smtplib.SMTP
        if scheme == "smtps":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            tls = True
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
            tls = False
        with client:
            client.ehlo()
            if not tls and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
                tls = True
            refused = client.sendmail(sender, recipients, message)
    except smtplib.SMTPRecipientsRefused as exc:
        bad = ", ".join(f"{r} ({code} {msg!r})" for r, (code, msg) in exc.recipients.items())
        temporary = all(400 <= code < 500 for code, _msg in exc.recipients.values())
        raise (SubmitTemporary if temporary else EndpointError)(
            f"{host}:{port} refused every recipient: {bad}") from None
    except smtplib.SMTPResponseException as exc:
        raise (SubmitTemporary if 400 <= exc.smtp_code < 500 else EndpointError)(
            f"{host}:{port} refused the message: {exc.smtp_code} {exc.smtp_error!r}") from None
    except ssl.SSLCertVerificationError as exc:  # a configuration problem, not a passing one
        raise EndpointError(f"cannot submit to {host}:{port}: {exc}") from None
    except (OSError, smtplib.SMTPException) as exc:  # unreachable, reset, timed out
        raise SubmitTemporary(f"cannot submit to {host}:{port}: {exc}") from None
    if refused:
        bad = ", ".join(f"{r} ({code})" for r, (code, _msg) in refused.items())
        raise EndpointError(f"{host}:{port} refused some recipients: {bad}")
    return tls
