"""HTTP API of the auth service: /api/v1/auth/* and /.well-known/jwks.json."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from services.auth import crud
from services.auth.deps import RuntimeDep
from services.auth.models import User
from services.auth.runtime import AuthRuntime
from services.auth.schemas import Credentials, RefreshRequest, Registration, TokenPair, UserPublic
from services.auth.tokens import access_token
from services.kit.deps import SessionDep
from services.kit.errors import Conflict, Unauthorized
from services.kit.forwarding import client_address
from services.kit.openapi import raises

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
jwks_router = APIRouter(tags=["auth"])

#: One message for unknown email and wrong password alike: no account enumeration.
BAD_CREDENTIALS = "invalid email or password"
#: Also cap how often the JWKS endpoint re-reads the key table under a burst.
JWKS_RELOAD_SECONDS = 1.0


async def _token_pair(runtime: AuthRuntime, user: User, refresh_token: str, response: Response) -> TokenPair:
    # Tokens are credentials: no browser or proxy cache may keep a copy (RFC 6749 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    await runtime.keys.refresh(runtime.settings.signing_keys_refresh_seconds)
    token = access_token(user=user, key=runtime.keys.signer, settings=runtime.settings)
    return TokenPair(access_token=token, refresh_token=refresh_token,
                     expires_in=runtime.settings.access_token_ttl_seconds)


def _client(request: Request, runtime: AuthRuntime) -> str:
    """The address login budgets count under: the client as the gateway saw it."""
    return client_address(request, runtime.settings.forwarding_token.get_secret_value())


def _refresh_ttl(runtime: AuthRuntime) -> timedelta:
    return timedelta(seconds=runtime.settings.refresh_token_ttl_seconds)


@router.post("/register", response_model=UserPublic, status_code=status.HTTP_201_CREATED,
             summary="Create an account")
@raises(409, 429)
async def register(body: Registration, request: Request, session: SessionDep, runtime: RuntimeDep) -> UserPublic:
    await runtime.throttle.registration(client=_client(request, runtime))
    if await crud.get_user_by_email(session=session, email=body.email) is not None:
        # Reveals that the email has an account: accepted for sign-up UX, and bounded by the
        # per-address budget above (README, "Login limits, and what registration reveals").
        raise Conflict("an account with this email already exists")
    await crud.release_connection(session)
    password_hash = await runtime.passwords.hash(body.password)
    user = await crud.create_user(session=session, email=body.email, password_hash=password_hash)
    return UserPublic.model_validate(user)


@router.post("/login", response_model=TokenPair, summary="Exchange email and password for tokens")
@raises(401, 429)
async def login(body: Credentials, request: Request, response: Response, session: SessionDep,
                runtime: RuntimeDep) -> TokenPair:
    client = _client(request, runtime)
    await runtime.throttle.attempt(email=body.email, client=client)
    user = await crud.get_user_by_email(session=session, email=body.email)
    await crud.release_connection(session, user)
    # verify() runs even without a user (against a dummy hash): equal time either way.
    matched = await runtime.passwords.verify(user.password_hash if user else None, body.password)
    if user is None or not matched:
        raise Unauthorized(BAD_CREDENTIALS)
    if runtime.passwords.needs_rehash(user.password_hash):
        # The cost parameters were raised since this hash was made; upgrade it while
        # the password is at hand (the only moment it ever is).
        await crud.set_password_hash(session=session, user=user,
                                     password_hash=await runtime.passwords.hash(body.password))
    await runtime.throttle.succeeded(email=body.email, client=client)
    refresh_token = await crud.issue_refresh_token(session=session, user_id=user.id, ttl=_refresh_ttl(runtime))
    return await _token_pair(runtime, user, refresh_token, response)


@router.post("/refresh", response_model=TokenPair, summary="Trade a refresh token for a new pair (rotation)")
@raises(401)
async def refresh(body: RefreshRequest, response: Response, session: SessionDep, runtime: RuntimeDep) -> TokenPair:
    user, refresh_token = await crud.rotate_refresh_token(session=session, token=body.refresh_token,
                                                          ttl=_refresh_ttl(runtime))
    return await _token_pair(runtime, user, refresh_token, response)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT,
             summary="Revoke a refresh token and every token rotated from the same login")
async def logout(body: RefreshRequest, session: SessionDep) -> Response:
    await crud.revoke_refresh_family(session=session, token=body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@jwks_router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(runtime: RuntimeDep) -> JSONResponse:
    await runtime.keys.refresh(min(JWKS_RELOAD_SECONDS, runtime.settings.signing_keys_refresh_seconds))
    return JSONResponse(runtime.keys.jwks(),
                        headers={"Cache-Control": f"public, max-age={runtime.settings.jwks_max_age_seconds}"})
