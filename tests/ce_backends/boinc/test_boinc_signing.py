"""BOINC code signing: key text layout, signatures that OpenSSL (as the client does) recovers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bonjourgrid.ce_backends.boinc.signing import (
    CodeSignKey,
    check_file_signature,
    check_md5_signature,
    hex_block,
    md5_hex,
    parse_hex_block,
)


@pytest.fixture(scope="module")
def key() -> CodeSignKey:
    return CodeSignKey.generate()


def test_public_key_text_is_boincs_r_rsa_public_key_dump(key: CodeSignKey) -> None:
    lines = key.public_text.splitlines()
    assert lines[0] == "1024"
    assert lines[-1] == "."
    body = lines[1:-1]
    assert len(body) == 8 and all(len(line) == 64 for line in body)  # 256 bytes, 32 per line
    data = bytes.fromhex("".join(body))
    pub = key._key.public_key().public_numbers()
    assert int.from_bytes(data[:128], "big") == pub.n
    assert int.from_bytes(data[128:], "big") == pub.e == 65537


def test_file_signature_checks_and_other_content_does_not(key: CodeSignKey) -> None:
    sig = key.sign_file(b"#!/bin/sh\necho hi\n")
    assert check_file_signature(key.public_text, b"#!/bin/sh\necho hi\n", sig)
    assert not check_file_signature(key.public_text, b"#!/bin/sh\necho HI\n", sig)
    other = CodeSignKey.generate()
    assert not check_file_signature(other.public_text, b"#!/bin/sh\necho hi\n", sig)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_openssl_public_decrypt_recovers_the_md5_hex(key: CodeSignKey, tmp_path: Path) -> None:
    # What the client does: RSA_public_decrypt with PKCS#1 padding gives md5_hex(file).
    data = b"some executable content"
    pub = tmp_path / "pub.pem"
    pub.write_bytes(
        key._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    sig = tmp_path / "sig"
    sig.write_bytes(parse_hex_block(key.sign_file(data)))
    out = subprocess.run(
        ["openssl", "pkeyutl", "-verifyrecover", "-pubin", "-inkey", str(pub),
         "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", str(sig)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert out == md5_hex(data).encode()


def test_key_survives_serialisation(key: CodeSignKey) -> None:
    again = CodeSignKey.from_json(key.to_json())
    assert again.public_text == key.public_text
    assert again.sign_file(b"x") == key.sign_file(b"x")  # PKCS#1 type 1 is deterministic


def test_key_signature_signs_the_key_as_the_client_parsed_it(key: CodeSignKey) -> None:
    # The client checks the md5 of the <code_sign_key> contents, trimmed at both ends.
    stripped = key.public_text.strip().encode()
    assert check_md5_signature(key.public_text, md5_hex(stripped), key.key_signature)


def test_refuses_a_key_the_client_cannot_parse() -> None:
    big = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = big.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ValueError, match="1024"):
        CodeSignKey.from_json(pem)


def test_hex_block_layout() -> None:
    assert (
        hex_block(bytes(range(40)))
        == bytes(range(32)).hex() + "\n" + bytes(range(32, 40)).hex() + "\n.\n"
    )
    assert parse_hex_block(hex_block(b"\x00\x01abc")) == b"\x00\x01abc"
