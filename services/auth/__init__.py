"""The auth service: accounts, argon2 passwords, access JWTs, refresh tokens, JWKS."""
