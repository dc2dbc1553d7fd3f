"""One-time codes (TOTP, RFC 6238) that prove a human with an authenticator app approved a plan.

With ``approvals.totp_secret`` set (``chiffon totp setup`` makes one and prints the
``otpauth://`` URI any authenticator app reads), every approval channel asks for the current
6-digit code: ``chiffon approve``, ``chiffon run``, the MCP approval form and the operator-enabled
approve tool. A model with a shell still cannot approve: it does not hold the phone, provided it cannot read
the secret either, so the secret belongs to chiffon's own service account (``chiffon deploy systemd --env-file``
writes it to a 0600 env file only root and systemd read). ``approvals.require_totp`` refuses every approval
while no secret is set; an approval made with a valid code is recorded as ``APPROVER + totp``.
Codes are checked with pyotp (30 s steps, one step of clock drift either way). A code is
accepted once: its time step is recorded (``totp_used``) in the same transaction as the
approval, so a code read over the operator's shoulder or from a log cannot approve a second plan
(RFC 6238, section 5.2).
"""

from __future__ import annotations

import hmac
import time

from pydantic import SecretStr

from chiffon.shared.errors import InvalidInput

ISSUER = "chiffon"


def new_secret(account: str) -> tuple[str, str]:
    """A fresh base32 secret and its ``otpauth://`` provisioning URI for ``account``."""
    import pyotp  # loaded where codes are made or checked (it costs start-up time everywhere else)

    secret = pyotp.random_base32()
    return secret, pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def require(secret: SecretStr | None, code: str | None) -> int | None:
    """Check ``code`` against the TOTP secret; the 30 s time step it belongs to, or None when TOTP is off.

    The caller records the step (``totp_used``) with the approval so the code is not accepted again.

    Raises:
        InvalidInput: TOTP is on and the code is missing or wrong (nothing is recorded).
    """
    if secret is None:
        return None
    given = (code or "").strip().replace(" ", "")
    if not given:
        raise InvalidInput("code", "approvals need the current one-time code from your authenticator app "
                                   "(approvals.totp_secret is set)")
    import pyotp

    otp = pyotp.TOTP(secret.get_secret_value())
    step = otp.timecode(time.time())
    for drift in (0, -1, 1):  # one step of clock drift either way, as pyotp's verify(valid_window=1)
        if given.isdigit() and hmac.compare_digest(given, otp.generate_otp(step + drift)):
            return step + drift
    raise InvalidInput("code", "the one-time code is wrong or expired; nothing was approved")
