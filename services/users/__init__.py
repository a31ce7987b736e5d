"""The users service: the caller's own profile, created on first use."""
