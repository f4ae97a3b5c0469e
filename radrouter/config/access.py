"""Who may use the web app: roles, sessions, sign-in lock-out, HTTPS and OpenID Connect single sign-on."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator


class Role(enum.StrEnum):
    """What a person or service may do; each role includes those below (admin > radiologist > viewer)."""

    VIEWER = "viewer"
    RADIOLOGIST = "radiologist"
    ADMIN = "admin"

    def grants(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


class WebTLSSettings(BaseModel):
    """HTTPS for the web app: off unless a certificate and key are given."""

    cert_file: Path | None = Field(
        None, description="PEM certificate of the web app; with key_file: HTTPS only."
    )
    key_file: Path | None = Field(None, description="PEM private key of the web app's certificate.")

    @model_validator(mode="after")
    def _complete(self) -> WebTLSSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("web TLS needs both cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class SessionSettings(BaseModel):
    """Signed-in sessions of the pages (a signed, HttpOnly, SameSite cookie)."""

    idle_timeout_min: int = Field(30, ge=1, description="Minutes without a request before a session ends.")
    absolute_timeout_h: int = Field(12, ge=1, description="Hours after sign-in when a session ends anyway.")
    secret_key: SecretStr | None = Field(
        None, description="Key that signs session cookies; empty: one generated in <storage.root>/web-secret."
    )


class SignInSettings(BaseModel):
    """Lock-out after repeated wrong passwords."""

    max_failures: int = Field(5, ge=1, description="Wrong passwords in a row that lock a local account.")
    lockout_min: int = Field(15, ge=1, description="Minutes a locked account refuses every sign-in.")


class OIDCSettings(BaseModel):
    """Single sign-on with an OpenID Connect provider (authorization code flow with PKCE)."""

    issuer: str = Field("", description="Issuer URL of the identity provider; empty: single sign-on off.")
    client_id: str = Field("", description="Client ID radrouter is registered with at the provider.")
    client_secret: SecretStr | None = Field(None, description="Client secret, if the provider issued one.")
    scope: str = Field("openid profile email", description="Scopes asked for at sign-in.")
    groups_claim: str = Field("groups", description="ID token / userinfo claim that lists the user's groups.")
    role_groups: dict[str, Role] = Field(
        default_factory=dict,
        description="Provider group -> radrouter role; a user gets the highest role of their groups, "
        "and no role (refused) when none is listed.",
    )
    button_label: str = Field("Sign in with single sign-on", description="Text of the sign-in page's button.")

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)
