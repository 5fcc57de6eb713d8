"""Who may use the codec server (worker.codec_server): a caller decrypts payloads with it.

Settings from the environment (prefix CHECKOUT_CODEC_, empty values count as unset):

- `CHECKOUT_CODEC_AUTH_TOKEN`: a static bearer token (at least 16 characters), compared in
  constant time. For the `temporal` CLI: `--codec-auth "Bearer $TOKEN"`, and for scripts.
- `CHECKOUT_CODEC_JWKS_URL` with `CHECKOUT_CODEC_JWT_ISSUER` and `CHECKOUT_CODEC_JWT_AUDIENCE`
  (both required with it): a JWT, as the Temporal Web UI forwards the user's access token
  when its codec setting `passAccessToken` is on, verified against the identity provider's
  JWKS: signature, `exp`, `iss`, `aud`. `CHECKOUT_CODEC_JWT_ALGORITHMS` (comma-separated,
  asymmetric only; default RS256,ES256), `CHECKOUT_CODEC_JWT_LEEWAY_SECONDS` (clock skew).

Either or both; once one is set, `/decode` and `/encode` answer 401 to a caller without it.
With none, the server decrypts for whoever reaches it, and says so when it starts.
"""

import secrets
from typing import Annotated, Any, Self

import jwt
from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

AUTH_TOKEN_ENV = "CHECKOUT_CODEC_AUTH_TOKEN"
JWKS_URL_ENV = "CHECKOUT_CODEC_JWKS_URL"
MIN_TOKEN_LENGTH = 16
# Keys from a JWKS are public keys: a symmetric algorithm (HS256) would let anyone holding
# the public key sign tokens, and "none" signs nothing.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
JWKS_TIMEOUT_SECONDS = 5.0


class CodecAuthSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHECKOUT_CODEC_", frozen=True, env_ignore_empty=True
    )

    auth_token: SecretStr | None = None
    jwks_url: AnyHttpUrl | None = None
    jwt_issuer: str | None = Field(default=None, min_length=1)
    jwt_audience: str | None = Field(default=None, min_length=1)
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = ("RS256", "ES256")
    jwt_leeway_seconds: float = Field(default=30.0, ge=0, le=300)
    # How long a fetched key set is kept; a token signed with a new key id fetches it again.
    jwks_cache_seconds: float = Field(default=300.0, gt=0, le=86_400)

    @field_validator("auth_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"at least {MIN_TOKEN_LENGTH} characters")
        return value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if refused or not value:
            allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ValueError(f"not an asymmetric JWT algorithm: {refused}; use some of {allowed}")
        return value

    @model_validator(mode="after")
    def _jwt_settings_complete(self) -> Self:
        if self.jwks_url is not None and (self.jwt_issuer is None or self.jwt_audience is None):
            raise ValueError(
                f"{JWKS_URL_ENV} needs CHECKOUT_CODEC_JWT_ISSUER and CHECKOUT_CODEC_JWT_AUDIENCE "
                "too: a token of the same identity provider for another API must not pass"
            )
        return self


def settings_problems(err: ValidationError) -> str:
    """The errors of a ValidationError without the values given (a token is a secret)."""
    lines = []
    for problem in err.errors():
        name = "_".join(str(part) for part in problem["loc"])
        where = f"CHECKOUT_CODEC_{name.upper()}: " if name else ""
        lines.append(f"{where}{problem['msg']}")
    return "; ".join(lines)


class CodecAuthError(Exception):
    """A refused caller: the status, a code and a message for the JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        if self.status != 401:
            return {}
        # RFC 6750: say which scheme, and why the credential given was refused.
        error = "" if self.code == "missing_credential" else ', error="invalid_token"'
        return {"WWW-Authenticate": f'Bearer realm="codec"{error}'}


class CodecAuth:
    """Checks the `Authorization` header of a call to /decode or /encode."""

    def __init__(self, settings: CodecAuthSettings) -> None:
        self.settings = settings
        token = settings.auth_token
        self._token = token.get_secret_value().encode() if token is not None else None
        self._jwks = (
            jwt.PyJWKClient(
                str(settings.jwks_url),
                lifespan=settings.jwks_cache_seconds,
                timeout=JWKS_TIMEOUT_SECONDS,
            )
            if settings.jwks_url is not None
            else None
        )

    @classmethod
    def from_env(cls) -> "CodecAuth":
        return cls(CodecAuthSettings())

    @classmethod
    def open(cls) -> "CodecAuth":
        """No credential: every caller decrypts (a dev stack on loopback)."""
        return cls(CodecAuthSettings.model_construct())

    @property
    def required(self) -> bool:
        return self._token is not None or self._jwks is not None

    def describe(self) -> str | None:
        """What a caller must send (None: nothing), for the line the server starts with."""
        ways = []
        if self._token is not None:
            ways.append(f"the token of {AUTH_TOKEN_ENV}")
        if self._jwks is not None:
            s = self.settings
            ways.append(f"a JWT from {s.jwks_url} (iss {s.jwt_issuer!r}, aud {s.jwt_audience!r})")
        return f"callers must send Authorization: Bearer <{' | '.join(ways)}>" if ways else None

    def check(self, authorization: str | None) -> None:
        """Return when the caller may decrypt, else raise CodecAuthError.

        Blocking (a JWKS fetch on a cache miss): call it from a thread, not the event loop.
        """
        if not self.required:
            return
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise CodecAuthError(
                401, "missing_credential", "send Authorization: Bearer <token or JWT>"
            )
        if self._token is not None and secrets.compare_digest(credential.encode(), self._token):
            return
        if self._jwks is not None and credential.count(".") == 2:
            self._check_jwt(credential)
            return
        raise CodecAuthError(401, "invalid_credential", "wrong credential")

    def _check_jwt(self, token: str) -> None:
        assert self._jwks is not None
        s = self.settings
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            jwt.decode(
                token,
                key,
                algorithms=list(s.jwt_algorithms),
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as err:
            # Not the caller's fault: say so, and do not let it pass.
            raise CodecAuthError(
                503, "jwks_unavailable", f"cannot fetch the signing keys: {err}"
            ) from err
        except jwt.ExpiredSignatureError as err:
            raise CodecAuthError(401, "invalid_credential", "JWT expired") from err
        except jwt.InvalidAudienceError as err:
            raise CodecAuthError(401, "invalid_credential", "JWT for another audience") from err
        except jwt.InvalidIssuerError as err:
            raise CodecAuthError(401, "invalid_credential", "JWT from another issuer") from err
        except jwt.PyJWTError as err:  # bad signature, unknown key id, missing claim, ...
            raise CodecAuthError(401, "invalid_credential", f"JWT refused: {err}") from err
