"""The web console (``console:``) and its logins."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from chiffon.shared.config.base import Section


class Operator(Section):
    """A console login: a name and its argon2 password hash (`chiffon console passwd NAME` writes one)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="Login name; the audit records it as "
                                                                          "the approver.")
    password_hash: SecretStr = Field(description="argon2id PHC string ($argon2id$...); never the password.")

    @model_validator(mode="after")
    def _argon2(self) -> Operator:
        if not self.password_hash.get_secret_value().startswith("$argon2"):
            raise ValueError("password_hash must be an argon2 hash; make one with `chiffon console passwd NAME`")
        return self


class ConsoleSettings(Section):
    """The web console (`chiffon console`): plans, runs, audit, hosts, agents and the voice assistant."""

    bind: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(7860, gt=0, lt=65536, description="TCP port.")
    operators: list[Operator] = Field(default_factory=list, description="Who may log in; the console refuses to "
                                                                        "start without one.")
    refresh_s: float = Field(1.0, ge=0.2, le=60, description="How often the open pages refresh, seconds.")
    login_max_failures: int = Field(5, ge=1, le=100, description="Failed logins of one name, or from one address, "
                                                                 "before the console refuses that name/address "
                                                                 "for a while without checking the password.")
    login_window_s: float = Field(900.0, gt=0, description="Failures count together while none is older than "
                                                           "this quiet gap, seconds; a quiet gap this long, or a "
                                                           "good login, resets the count.")
    login_base_delay_s: float = Field(30.0, gt=0, description="First back-off after login_max_failures failures, "
                                                              "seconds; doubled for each failure after it.")
    login_max_delay_s: float = Field(3600.0, gt=0, description="Longest back-off, seconds.")
    url: str | None = Field(None, pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$",
                            description="Public base URL of the console, for the links in notifications "
                                        "(https://ai.homelab.lan:7860); unset: http(s)://BIND:PORT, a wildcard bind "
                                        "replaced by this host's name.")
