"""Password hashing with argon2id (argon2-cffi): `hash_password`, `verify_password`.

`verify_password` returns False on any mismatch or malformed hash; a dummy verification keeps timing
similar for unknown users (`verify_dummy`). The API awaits `check_password` / `hash_password_async`,
which run the same work off the event loop behind the CPU limiter (`flowstudio.offload`): one argon2
verification costs tens of ms of CPU, and eight concurrent bad logins used to stall every request.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from flowstudio.offload import run_cpu

_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("dummy-password-for-timing")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_dummy(password: str) -> None:
    verify_password(_DUMMY, password)


def _check(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        verify_dummy(password)
        return False
    return verify_password(password_hash, password)


async def check_password(password_hash: str | None, password: str) -> bool:
    """Off the event loop; None (unknown user) verifies a dummy hash so timing stays similar."""
    return await run_cpu(_check, password_hash, password)


async def hash_password_async(password: str) -> str:
    return await run_cpu(hash_password, password)
