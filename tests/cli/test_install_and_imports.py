"""bonjourgrid installs and imports on Python 3.10-3.13: every third-party module the code
imports is a declared dependency (base or an extra), `tomli` is declared for Python < 3.11
only, and every module imports with `tomllib` absent (as on Python 3.10)."""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_TO_DIST = {"htcondor2": "htcondor", "htcondor": "htcondor", "nacl": "pynacl"}
"""Import names whose distribution is named otherwise."""


def _requirement_names(lines: str) -> dict[str, str]:
    """{distribution name: its full requirement line} of a setup.cfg requirement list."""
    out: dict[str, str] = {}
    for line in lines.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")
            out[name] = line
    return out


def declared() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(install_requires, {extra: requirements}) from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    base = _requirement_names(cfg["options"]["install_requires"])
    extras = {k: _requirement_names(v) for k, v in cfg["options.extras_require"].items()}
    return base, extras


def third_party_imports() -> dict[str, set[str]]:
    """{top-level module: files importing it} over bonjourgrid/ and cli/ (absolute imports
    that are neither the standard library nor bonjourgrid)."""
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "bonjourgrid").rglob("*.py"), *(ROOT / "cli").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"bonjourgrid", "__future__"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    base, extras = declared()
    everything = set(base) | {n for reqs in extras.values() for n in reqs}
    imports = third_party_imports()
    assert {"zeroconf", "click", "ifaddr"} <= set(imports)  # the scan sees real imports
    undeclared = {
        mod: sorted(files)
        for mod, files in imports.items()
        if IMPORT_TO_DIST.get(mod, mod).lower() not in everything
    }
    assert undeclared == {}


def test_modules_imported_outside_a_backend_are_base_dependencies() -> None:
    """An extra may only serve an optional backend: the rest must install with the base."""
    base, _ = declared()
    for mod, files in third_party_imports().items():
        if IMPORT_TO_DIST.get(mod, mod).lower() in base:
            continue
        assert all(f.startswith("bonjourgrid/ce_backends/") for f in files), (mod, files)


def test_tomli_is_declared_for_python_before_3_11_only() -> None:
    base, _ = declared()
    assert "tomli" in base
    marker = base["tomli"].split(";", 1)[1].replace(" ", "").replace("'", '"')
    assert marker == 'python_version<"3.11"'


def test_the_example_app_is_a_listed_package_so_setuptools_does_not_warn() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = cfg["options"]["packages"].split()
    tracked = subprocess.run(
        ["git", "ls-files", "bonjourgrid"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    on_disk = {".".join(Path(f).parent.parts) for f in tracked if f.endswith(".py")}
    assert on_disk - set(packages) == set()
    assert "*.json" in cfg["options.package_data"]["bonjourgrid.examples.squares"]


# Run in a fresh interpreter: a finder refuses `tomllib` (as Python 3.10 has none) and
# `tomli` is the standard library's parser loaded under that name (tomllib *is* tomli,
# vendored), so the fallback import path is the one exercised.
_HIDDEN_TOMLLIB = textwrap.dedent(
    """
    import importlib, importlib.util, pkgutil, sys, sysconfig, os
    stdlib_toml = os.path.join(sysconfig.get_paths()["stdlib"], "tomllib")

    class NoTomllib:
        def find_spec(self, name, path=None, target=None):
            if name == "tomllib" or name.startswith("tomllib."):
                raise ModuleNotFoundError("No module named 'tomllib'", name="tomllib")
            if name == "tomli":
                return importlib.util.spec_from_file_location(
                    "tomli", os.path.join(stdlib_toml, "__init__.py"),
                    submodule_search_locations=[stdlib_toml])
            return None

    sys.meta_path.insert(0, NoTomllib())
    import bonjourgrid
    bad = []
    for m in pkgutil.walk_packages(bonjourgrid.__path__, "bonjourgrid."):
        if m.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(m.name)
        except Exception as e:
            bad.append(f"{m.name}: {e!r}")
    assert "tomllib" not in sys.modules, "something imported tomllib"
    from bonjourgrid import config
    assert config.tomllib.__name__ == "tomli", config.tomllib
    print("BAD", bad)
    """
)


def test_every_module_imports_with_tomllib_absent() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _HIDDEN_TOMLLIB],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "BAD []"


def test_without_tomli_either_the_error_names_the_missing_module() -> None:
    """Hostile environment: neither parser at all. The failure says what is missing (the
    dependency is declared, so this is a broken install), never an unrelated error."""
    script = (
        "import sys\n"
        "class No:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('tomllib', 'tomli'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, No())\n"
        "import bonjourgrid.config\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert "tomli" in out.stderr.splitlines()[-1]
