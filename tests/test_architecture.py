"""The shape rules of architecture.md, checked on the source tree.

* The core is pure: framing, adapters, encoders, config, request, events, errors and the pipeline
  import neither aiohttp nor asyncio (so every piece is testable without a server).
* Nothing outside ``gateway/adapters/`` names a provider: provider knowledge lives in one module
  per provider (the litellm counter-example in architecture.md).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"
PURE = [
    "framing",
    "adapters",
    "encoders",
    "config",
    "request.py",
    "events.py",
    "errors.py",
    "pipeline.py",
    "jsonutil.py",
]
PROVIDER_WORDS = re.compile(
    r"openai|anthropic|claude|gemini|google|vertex|ollama|cohere|bedrock|aws|amazon|"
    r"deepseek|vllm|mistral|groq|openrouter|litellm|gpt-\d",
    re.IGNORECASE,
)
# A client-facing format that copies a provider's public API may say whose API it copies, and a
# wire framing may carry its standard name (the binary event-stream format has one owner's name).
ALLOWED_PHRASES = re.compile(
    r"openai[- ]compatible|openai sdk|openai package|aws[- _]event[- _]?stream|vnd\.amazon\.eventstream"
    r"|anthropic messages|anthropic sdk|anthropic-version|anthropic-beta|claude code",
    re.IGNORECASE,
)


def _modules(entry: str) -> list[Path]:
    path = GATEWAY / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path", [p for e in PURE for p in _modules(e)], ids=lambda p: str(p.relative_to(GATEWAY))
)
def test_core_is_pure(path: Path) -> None:
    bad = _imports(path) & {"aiohttp", "asyncio"}
    assert not bad, f"{path.relative_to(GATEWAY)} imports {bad}: the core must stay free of I/O"


def _outside_adapters() -> list[Path]:
    return [
        p
        for p in sorted(GATEWAY.rglob("*"))
        if p.is_file()
        and "adapters" not in p.relative_to(GATEWAY).parts
        and p.suffix in (".py", ".js", ".html", ".css", ".ts")
    ]


@pytest.mark.parametrize("path", _outside_adapters(), ids=lambda p: str(p.relative_to(GATEWAY)))
def test_no_provider_named_outside_adapters(path: Path) -> None:
    text = ALLOWED_PHRASES.sub("", path.read_text(errors="replace"))
    found = sorted({m.group(0).lower() for m in PROVIDER_WORDS.finditer(text)})
    assert not found, (
        f"{path.relative_to(GATEWAY)} names providers {found}; move that knowledge into gateway/adapters/"
    )


def test_the_guard_would_catch_a_provider_name(tmp_path: Path) -> None:
    probe = "if provider == 'anthropic': pass"
    assert PROVIDER_WORDS.search(ALLOWED_PHRASES.sub("", probe))
    assert not PROVIDER_WORDS.search(ALLOWED_PHRASES.sub("", "an OpenAI-compatible front door"))


# -- the import graph --------------------------------------------------------------------------

OPTIONAL = {"uvloop", "orjson", "redis", "opentelemetry", "genai_prices"}
"""Optional dependencies: the only imports allowed inside functions (they may be missing)."""
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(GATEWAY.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _gateway_imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """Gateway modules imported at module level (outside ``TYPE_CHECKING``), and those imported
    inside functions (line, module)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    nested: list[tuple[int, str]] = []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        return []

    def visit(node: ast.AST, in_function: bool, in_type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: never executed
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            for name in names(child):
                if not name.startswith("gateway"):
                    continue
                if in_function:
                    nested.append((child.lineno, name))
                else:
                    top.add(name)
            visit(child, inner, in_type_checking)

    visit(tree, False, False)
    return top, nested


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in GATEWAY.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        top, _ = _gateway_imports(path)
        edges = {m for m in top if m in modules and m != name}
        # Importing ``a.b.c`` runs ``a`` and ``a.b`` first: package inits are edges too.
        for m in list(edges):
            parts = m.split(".")
            edges.update(
                ".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in modules
            )
        graph[name] = edges - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package importing its own submodules is how packages are built, not a cycle.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_would_catch_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _wraps_optional(name: str) -> bool:
    """A gateway module that imports an optional dependency at module level (so importing it
    lazily is how the gateway runs without that dependency)."""
    path = GATEWAY.parent / (name.replace(".", "/") + ".py")
    return path.is_file() and bool(_top_level_imports(path) & OPTIONAL)


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


LAZY_ON_PURPOSE = {"command.py"}
"""Modules whose one job is to act before the gateway is imported: the command's entry point
blocks SIGHUP first (``gateway/command.py``)."""


@pytest.mark.parametrize(
    "path",
    sorted(p for p in GATEWAY.rglob("*.py") if str(p.relative_to(GATEWAY)) not in LAZY_ON_PURPOSE),
    ids=lambda p: str(p.relative_to(GATEWAY)),
)
def test_no_gateway_module_is_imported_inside_a_function(path: Path) -> None:
    _, nested = _gateway_imports(path)
    by_line: dict[int, list[str]] = {}
    for line, name in nested:
        by_line.setdefault(line, []).append(name)
    nested = [
        (line, names[0])
        for line, names in by_line.items()
        if not any(_wraps_optional(n) or _wraps_optional(n.rpartition(".")[0]) for n in names)
    ]
    assert not nested, (
        f"{path.relative_to(GATEWAY)} imports {nested} inside functions: import at the top "
        "(only optional dependencies may be imported lazily)"
    )


@pytest.mark.filterwarnings("default")
def test_modules_stay_small() -> None:
    """Around 400 lines at most (architecture.md): a warning past it, a failure at twice that."""
    big = {
        str(p.relative_to(GATEWAY)): n
        for p in GATEWAY.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    for name, n in big.items():
        warnings.warn(f"{name} has {n} lines (over {MAX_LINES}): split it", stacklevel=1)
    assert all(n < 2 * MAX_LINES for n in big.values()), (
        f"modules far over {MAX_LINES} lines: {big}"
    )


PROMETHEUS_OBJECTS = re.compile(  # a metric family, a label lookup, a record call, the import
    r"\b(Counter|Gauge|Histogram|Summary)\(|\.labels\(|\.(inc|dec|observe)\(|"
    r"^\s*(from|import) prometheus_client"
)


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(GATEWAY.rglob("*.py")) if "metrics" not in p.relative_to(GATEWAY).parts],
    ids=lambda p: str(p.relative_to(GATEWAY)),
)
def test_prometheus_objects_are_touched_only_in_metrics(path: Path) -> None:
    code = "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    found = sorted({m.group(0).strip() for m in PROMETHEUS_OBJECTS.finditer(code)})
    assert not found, (
        f"{path.relative_to(GATEWAY)} touches Prometheus objects ({found}): use gateway.metrics"
    )


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    """Cycles through package ``__init__`` files show only at run time, depending on which
    module is imported first: import each one first, in one fresh interpreter. The sources'
    import graph is the subject (``GATEWAY_NATIVE=0``): an extension module, once initialised,
    cannot be imported afresh in the same process, as this does."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m == 'gateway' or m.startswith('gateway.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        failed.append(f'{name}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    names = sorted(_module_name(p) for p in GATEWAY.rglob("*.py") if p.name != "__main__.py")
    env = {**os.environ, "GATEWAY_NATIVE": "0"}
    runs = [  # two interpreters, each its half of the modules, at the same time (two cores)
        subprocess.Popen(
            [sys.executable, "-c", script, *names[half::2]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=GATEWAY.parent,
            env=env,
        )
        for half in (0, 1)
    ]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert out.strip() == "", out
