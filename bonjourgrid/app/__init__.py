"""The application model: app.json in, a validated `AppSpec` and file bundles out.

Pure except for `load_app` (reads the file and checks `files` exist) and the bundle helpers
(read and write the files they pack and unpack).

The names below load their module when first used (PEP 562): a daemon that imports one
submodule (``app.spec``, ``app.ce_key``) does not load the parser and the tar code with it —
an idle volunteer needs neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "BundleError": "bundle",
    "build_bundle": "bundle",
    "extract_bundle": "bundle",
    "pack_files": "bundle",
    "sha256_hex": "bundle",
    "unpack_files": "bundle",
    "AppError": "fields",
    "load_app": "load",
    "parse_app": "load",
    "schema_text": "load",
    "BACKENDS": "spec",
    "FORMAT_VERSION": "spec",
    "AppSpec": "spec",
    "Requirements": "spec",
    "TaskSpec": "spec",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


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
