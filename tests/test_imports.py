"""Imports point one way (docs/STYLE principles 10 and 15): the genzoo package, read with ``ast`` (nothing is
imported), has no cycle among its modules, counting the imports inside functions too; and only the entry points
import the command line or the trainer."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "genzoo"
ENTRY_POINTS = {"genzoo", "genzoo.__main__"}       # genzoo/__init__.py, __main__.py, and the genzoo/cli/ package


def _modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package's __init__)} of every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _own_constants(path: Path) -> set[str]:
    """Names a package's __init__ binds by plain assignment at its top level (``__version__``): importing one
    needs only the package's own body, which Python runs before any of its submodules."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _targets(name: str, package: bool, node, modules: dict) -> list[str]:
    """The genzoo modules one import statement of module ``name`` depends on."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "genzoo"]
    if node.level:                                   # relative: from a package ``level - 1`` steps above this one
        base = name.split(".") if package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)] + (node.module.split(".") if node.module else [])
    elif node.module and node.module.split(".")[0] == "genzoo":
        base = node.module.split(".")
    else:
        return []
    source = ".".join(base)
    out = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in modules:                           # from genzoo import metrics: the submodule
            out.append(sub)
        elif not (source in modules and modules[source][1] and alias.name in _own_constants(modules[source][0])):
            out.append(source)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the genzoo modules it imports}, from module-level and function-level imports alike."""
    modules = _modules(root)
    graph = {}
    for name, (path, package) in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(name, package, node, modules):
                    while target not in modules and "." in target:      # genzoo.data.load_split -> genzoo.data
                        target = target.rsplit(".", 1)[0]
                    if target in modules and target != name:
                        edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search, colouring the nodes)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _in(package: str, name: str) -> bool:
    return name == package or name.startswith(package + ".")


def _is_entry_point(name: str) -> bool:
    return name in ENTRY_POINTS or _in("genzoo.cli", name)


def _is_trainer(name: str) -> bool:
    return _in("genzoo.trainer", name)


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "genzoo.evaluate" in graph and "genzoo.models.base" in graph        # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_only_the_entry_points_import_the_command_line_or_the_trainer():
    graph = import_graph()
    wrong = sorted(f"{m} imports {t}" for m, targets in graph.items() for t in targets
                   if (_in("genzoo.cli", t) or _is_trainer(t)) and not _is_entry_point(m) and not _is_trainer(m))
    assert not wrong, "; ".join(wrong)


def test_the_checks_see_what_they_claim(tmp_path):
    # a cycle through a function-level import, and imports of constants, submodules and names, resolved as stated
    pkg = tmp_path / "genzoo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("__version__ = '1'\n\ndef load():\n    from .a import f\n")
    (pkg / "a.py").write_text("from . import __version__\nfrom .sub import b\n\ndef f():\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import genzoo.cli\n\ndef g():\n    from ..a import f\n")
    (pkg / "cli.py").write_text("from genzoo import __version__\n")
    (pkg / "c.py").write_text("from genzoo import load\n")
    graph = import_graph(pkg)
    assert graph == {"genzoo": {"genzoo.a"}, "genzoo.a": {"genzoo.sub.b"}, "genzoo.sub": set(),
                     "genzoo.sub.b": {"genzoo.cli", "genzoo.a"}, "genzoo.cli": set(), "genzoo.c": {"genzoo"}}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and set(cycle) == {"genzoo.a", "genzoo.sub.b"}
    assert find_cycle({"x": {"y"}, "y": set()}) is None
