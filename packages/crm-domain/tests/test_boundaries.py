"""The one rule: ``crm_domain`` imports no adapter, web framework, SQL library or HTTP client.

Three independent checks:

1. import-linter with the root ``pyproject.toml``'s contract for ``crm_domain``
   (run programmatically), after checking the contract itself names what it
   must and really catches a violation (a canary package that breaks it);
2. a walk over the AST of every ``crm_domain`` module (``import``, ``from …
   import`` and ``importlib.import_module("…")`` with a literal name);
3. importing every ``crm_domain`` module in a fresh interpreter and looking
   at ``sys.modules`` — which also catches a dependency that drags one in.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from importlinter.cli import lint_imports

import crm_domain

ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIR = Path(crm_domain.__file__).resolve().parent

#: What the import-linter contract must forbid, at the least.
REQUIRED_FORBIDDEN = {
    # adapters
    "crm_gateway_sql",
    "crm_gateway_d1",
    "crm_ai",
    "crm_messaging",
    "crm_http_litestar",
    # SQL libraries and drivers
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "sqlite3",
    "psycopg",
    "psycopg2",
    # HTTP clients
    "httpx",
    "requests",
    "aiohttp",
    "urllib3",
    # web frameworks
    "litestar",
    "starlette",
    "fastapi",
    "flask",
    "django",
}

#: Checked by the AST walk and the runtime import: the contract's list plus the
#: standard library's network clients and servers (import-linter can only
#: forbid whole top-level packages, and ``urllib.parse`` is harmless).
FORBIDDEN_EXTRA = {
    "http.client",
    "http.server",
    "urllib.request",
    "smtplib",
    "socketserver",
    "ftplib",
    "aiosmtplib",
    "aiosmtpd",
    "uvicorn",
    "hypercorn",
    "tornado",
    "sanic",
    "quart",
    "pymysql",
    "redis",
    "boto3",
    "openai",
}


def _root_contract() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    [contract] = [c for c in contracts if c.get("source_modules") == ["crm_domain"]]
    return dict(contract)


def _forbidden() -> set[str]:
    return set(_root_contract()["forbidden_modules"]) | FORBIDDEN_EXTRA


def _write_config(path: Path, root_package: str, contract: dict[str, Any]) -> Path:
    """An import-linter INI config holding the root's crm_domain contract for ``root_package``."""
    lines = [
        "[importlinter]",
        "root_packages =",
        f"    {root_package}",
        "include_external_packages = True",
        "",
        "[importlinter:contract:domain]",
        f"name = {contract['name']}",
        f"type = {contract['type']}",
        "source_modules =",
        f"    {root_package}",
        "forbidden_modules =",
        *(f"    {module}" for module in contract["forbidden_modules"]),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _lint(config: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lint_imports(config_filename=str(config), no_cache=True)
    return code, out.getvalue()


@contextlib.contextmanager
def _on_sys_path(path: Path) -> Iterator[None]:
    sys.path.insert(0, str(path))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(path))
        for name in [n for n in sys.modules if n.split(".")[0] == "domain_canary"]:
            del sys.modules[name]


def test_root_contract_forbids_what_it_must() -> None:
    contract = _root_contract()
    assert contract["type"] == "forbidden"
    missing = REQUIRED_FORBIDDEN - set(contract["forbidden_modules"])
    assert not missing, f"the crm_domain contract does not forbid {sorted(missing)}"
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    # Without external packages import-linter cannot see sqlalchemy or httpx at all.
    assert settings["include_external_packages"] is True


def test_import_linter_contract_is_kept(tmp_path: Path) -> None:
    # Only crm_domain as root package: the check must not need the adapters installed.
    config = _write_config(tmp_path / ".importlinter", "crm_domain", _root_contract())
    code, output = _lint(config)
    assert code == 0, output
    assert "1 kept, 0 broken" in output


def test_import_linter_contract_catches_a_violation(tmp_path: Path) -> None:
    """A canary package that imports one module of each kind breaks the same contract."""
    canary = tmp_path / "domain_canary"
    canary.mkdir()
    (canary / "__init__.py").write_text("")
    (canary / "storage.py").write_text("import sqlite3\nfrom sqlalchemy import select\n")
    (canary / "web.py").write_text("import litestar\nfrom crm_gateway_sql import schema\n")
    (canary / "client.py").write_text("import httpx\n")
    config = _write_config(tmp_path / ".importlinter", "domain_canary", _root_contract())
    with _on_sys_path(tmp_path):
        code, output = _lint(config)
    assert code == 1
    for module in ("sqlite3", "sqlalchemy", "litestar", "crm_gateway_sql", "httpx"):
        assert f"domain_canary is not allowed to import {module}" in output


def _imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in {"import_module", "__import__"}
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, node.lineno


def _is_forbidden(module: str, forbidden: set[str]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


def test_no_module_of_crm_domain_imports_a_forbidden_module() -> None:
    forbidden = _forbidden()
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert len(files) > 30  # the walk really sees the package
    violations = [
        f"{path.relative_to(PACKAGE_DIR)}:{line}: {module}"
        for path in files
        for module, line in _imports(ast.parse(path.read_text(), str(path)))
        if _is_forbidden(module, forbidden)
    ]
    assert not violations, "\n".join(violations)


def test_the_ast_walk_would_see_each_kind_of_import() -> None:
    source = textwrap.dedent(
        """
        import sqlalchemy.ext.asyncio as sa
        from http import client
        from urllib.request import urlopen
        import importlib
        importlib.import_module("httpx")
        __import__("litestar")
        from . import sibling
        from urllib.parse import quote
        """
    )
    found = {module for module, _ in _imports(ast.parse(source))}
    flagged = {m for m in found if _is_forbidden(m, _forbidden())}
    assert {"sqlalchemy.ext.asyncio", "http.client", "urllib.request", "httpx", "litestar"} <= (
        flagged
    )
    assert "urllib.parse" not in flagged
    assert "urllib.parse.quote" not in flagged


def test_importing_all_of_crm_domain_loads_no_forbidden_module() -> None:
    script = textwrap.dedent(
        """
        import importlib, json, pkgutil, sys
        import crm_domain
        for info in pkgutil.walk_packages(crm_domain.__path__, "crm_domain."):
            importlib.import_module(info.name)
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "crm_domain.services.contacts" in loaded
    offenders = [m for m in loaded if _is_forbidden(m, _forbidden())]
    assert not offenders, offenders


@pytest.mark.parametrize("module", ["crm_domain.bootstrap", "crm_domain.services"])
def test_nothing_is_created_at_import_time(module: str) -> None:
    """No engine, connection or default unit of work exists merely by importing."""
    imported = importlib.import_module(module)
    from crm_domain.ports.gateway import DatabaseGateway, UnitOfWork

    made = [
        name
        for name, value in vars(imported).items()
        # Protocol classes themselves pass a runtime isinstance check: only instances count.
        if not isinstance(value, type) and isinstance(value, DatabaseGateway | UnitOfWork)
    ]
    assert made == []
