"""One-time codes (TOTP, RFC 6238) that prove a human with an authenticator app approved a plan.

With ``approvals.totp_secret`` set (``chiffon totp setup`` makes one and prints the
``otpauth://`` URI any authenticator app reads), every approval channel asks for the current
6-digit code: ``chiffon approve``, ``chiffon run``, the MCP approval form and the operator-enabled
approve tool. A model with a shell still cannot approve: it does not hold the phone.
Codes are checked with pyotp (30 s steps, one step of clock drift either way).
"""

from __future__ import annotations

import pyotp
from pydantic import SecretStr

from shared.errors import InvalidInput

ISSUER = "chiffon"


def new_secret(account: str) -> tuple[str, str]:
    """A fresh base32 secret and its ``otpauth://`` provisioning URI for ``account``."""
    secret = pyotp.random_base32()
    return secret, pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def require(secret: SecretStr | None, code: str | None) -> None:
    """Pass when TOTP is off (no ``secret``) or ``code`` is the current code.

    Raises:
        InvalidInput: TOTP is on and the code is missing or wrong (nothing is recorded).
    """
    if secret is None:
        return
    given = (code or "").strip().replace(" ", "")
    if not given:
        raise InvalidInput("code", "approvals need the current one-time code from your authenticator app "
                                   "(approvals.totp_secret is set)")
    if not (given.isdigit() and pyotp.TOTP(secret.get_secret_value()).verify(given, valid_window=1)):
        raise InvalidInput("code", "the one-time code is wrong or expired; nothing was approved")
