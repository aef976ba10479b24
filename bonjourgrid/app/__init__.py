"""The application model: app.json in, a validated `AppSpec` and file bundles out.

Pure except for `load_app` (reads the file and checks `files` exist) and the bundle helpers
(read and write the files they pack and unpack).
"""

from __future__ import annotations

from bonjourgrid.app.bundle import (
    BundleError,
    build_bundle,
    extract_bundle,
    pack_files,
    sha256_hex,
    unpack_files,
)
from bonjourgrid.app.fields import AppError
from bonjourgrid.app.load import load_app, parse_app, schema_text
from bonjourgrid.app.spec import BACKENDS, FORMAT_VERSION, AppSpec, Requirements, TaskSpec

__all__ = [
    "BACKENDS",
    "FORMAT_VERSION",
    "AppError",
    "AppSpec",
    "BundleError",
    "Requirements",
    "TaskSpec",
    "build_bundle",
    "extract_bundle",
    "load_app",
    "pack_files",
    "parse_app",
    "schema_text",
    "sha256_hex",
    "unpack_files",
]
