"""Code signing in BOINC's own format: a per-app 1024-bit RSA key, file and text signatures.

A BOINC client accepts an app-version file only if its ``<file_signature>`` checks against the
project's ``<code_sign_key>`` (BOINC ``lib/crypt.cpp``):

* key text: the ``R_RSA_PUBLIC_KEY`` struct as hex: a line with the decimal bit count, then
  ``modulus[128] || exponent[128]`` (big-endian, left-zero-padded), 32 bytes per line, then
  a line ``.``. ``MAX_RSA_MODULUS_BITS`` is 1024, so the key must be 1024-bit;
* signature: ``RSA_private_encrypt(md5_hex(file), PKCS#1 type 1)``, i.e. ``EM = 00 01 FF..FF
  00 || md5_hex`` (the 32 ASCII characters, no DigestInfo), ``s = EM^d mod n``, as 128 bytes
  in the same hex layout. Text signatures (``code_sign_key_signature``) sign ``md5_hex`` of
  the text with leading and trailing whitespace removed (what the client parsed).

The private key travels as PKCS#8 PEM (``to_json``/``from_json``) so the coordinator can
replicate it with the app's journal: a replica that takes over must sign with the same key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 1024
"""BOINC's MAX_RSA_MODULUS_BITS: the client refuses longer keys (lib/crypt.cpp)."""
_KEY_BYTES = KEY_BITS // 8
_PUBLIC_EXPONENT = 65537


def hex_block(data: bytes) -> str:
    """BOINC's ``print_hex_data``: lowercase hex, 32 bytes per line, then a ``.`` line."""
    lines = [data[i : i + 32].hex() for i in range(0, len(data), 32)]
    return "\n".join([*lines, "."]) + "\n"


def parse_hex_block(text: str) -> bytes:
    """The bytes of a ``hex_block`` (stops at the first ``.``)."""
    body = text.split(".", 1)[0]
    return bytes.fromhex("".join(body.split()))


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def strip_whitespace(text: str) -> str:
    """BOINC's ``strip_whitespace``: leading and trailing whitespace removed."""
    return text.strip()


def _pkcs1_type1(message: bytes) -> int:
    pad = _KEY_BYTES - 3 - len(message)
    if pad < 8:
        raise ValueError("message too long for the key")
    return int.from_bytes(b"\x00\x01" + b"\xff" * pad + b"\x00" + message, "big")


@dataclass(frozen=True)
class CodeSignKey:
    """A project's code-signing key pair. Build with :meth:`generate` or :meth:`from_json`."""

    private_pem: str

    @classmethod
    def generate(cls) -> CodeSignKey:
        key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=KEY_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(pem.decode("ascii"))

    @classmethod
    def from_json(cls, data: str) -> CodeSignKey:
        key = cls(data)
        if key._key.key_size != KEY_BITS:
            raise ValueError(f"a BOINC code-signing key must be {KEY_BITS}-bit RSA")
        return key

    def to_json(self) -> str:
        return self.private_pem

    @cached_property
    def _key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_pem.encode("ascii"), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        return key

    @cached_property
    def public_text(self) -> str:
        """The ``<code_sign_key>`` text the client stores and checks against."""
        numbers = self._key.public_key().public_numbers()
        data = numbers.n.to_bytes(_KEY_BYTES, "big") + numbers.e.to_bytes(_KEY_BYTES, "big")
        return f"{KEY_BITS}\n" + hex_block(data)

    def sign_md5(self, md5: str) -> str:
        """The signature text of a 32-character MD5 hex digest."""
        numbers = self._key.private_numbers()
        n = numbers.public_numbers.n
        s = pow(_pkcs1_type1(md5.encode("ascii")), numbers.d, n)
        return hex_block(s.to_bytes(_KEY_BYTES, "big"))

    def sign_file(self, data: bytes) -> str:
        """``<file_signature>`` of a file's content, as ``crypt_prog -sign`` makes it."""
        return self.sign_md5(md5_hex(data))

    def sign_text(self, text: str) -> str:
        """A string signature (``check_string_signature``), e.g. of the key itself."""
        return self.sign_md5(md5_hex(strip_whitespace(text).encode("ascii")))

    @cached_property
    def key_signature(self) -> str:
        """``<code_sign_key_signature>``: the public key signed by itself."""
        return self.sign_text(self.public_text)


def check_md5_signature(public_text: str, md5: str, signature: str) -> bool:
    """The client's ``check_file_signature``: does ``signature`` recover ``md5``?"""
    head, _, rest = public_text.strip().partition("\n")
    data = parse_hex_block(rest)
    if int(head) != KEY_BITS or len(data) != 2 * _KEY_BYTES:
        return False
    n = int.from_bytes(data[:_KEY_BYTES], "big")
    e = int.from_bytes(data[_KEY_BYTES:], "big")
    sig = parse_hex_block(signature)
    if len(sig) != _KEY_BYTES:
        return False
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(_KEY_BYTES, "big")
    if not em.startswith(b"\x00\x01"):
        return False
    sep = em.find(b"\x00", 2)
    if sep < 10 or em[2:sep] != b"\xff" * (sep - 2):
        return False
    return em[sep + 1 : sep + 33] == md5.encode("ascii")


def check_file_signature(public_text: str, data: bytes, signature: str) -> bool:
    return check_md5_signature(public_text, md5_hex(data), signature)


__all__ = [
    "KEY_BITS",
    "CodeSignKey",
    "check_file_signature",
    "check_md5_signature",
    "hex_block",
    "md5_hex",
    "parse_hex_block",
    "strip_whitespace",
]
