"""Password hashing with scrypt (``hashlib.scrypt``, OpenSSL's implementation): a memory-hard function with a
random salt per password. The stored form names its parameters, so they can be raised later without breaking the
hashes already stored: ``scrypt$<log2 n>$<r>$<p>$<salt base64>$<hash base64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

LOG2_N = 15
R = 8
P = 1
DKLEN = 32
MAX_PASSWORD_BYTES = 1024
"""Longer passwords are refused: scrypt's cost grows with the input, and nobody types more."""
MIN_PASSWORD_CHARS = 8


class PasswordError(ValueError):
    """A password that cannot be used (too short or too long)."""


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise PasswordError(f"the password must have at most {MAX_PASSWORD_BYTES} bytes")


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 1024 * 1024, dklen=DKLEN)


def hash_password(password: str) -> str:
    """The stored form of ``password`` (slow on purpose: ~50-100 ms; call it off the event loop)."""
    check_password(password)
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, LOG2_N, R, P)
    return "$".join(("scrypt", str(LOG2_N), str(R), str(P), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()))


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from; False for any malformed stored value."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        return False
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or not (10 <= int(log2_n) <= 20 and 1 <= int(r) <= 32 and 1 <= int(p) <= 16):
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _derive(password, base64.b64decode(salt, validate=True), int(log2_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


DUMMY_HASH = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
"""Checked against when the user does not exist, so an unknown name takes as long as a wrong password."""
