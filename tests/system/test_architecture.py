"""The package's layers, written once here: every import points down (or sideways inside a layer), and no
module imports itself back through others. A deferred (function-level) import says why it is deferred."""
import ast
import re

from paths import ROOT

PACKAGE = ROOT / "minicraft"
# Top to bottom. A module may import from its own layer and the layers below it, never from one above.
LAYERS = [
    ("tools", ["minicraft.cli", "minicraft.__main__", "minicraft.info", "minicraft.explorer", "minicraft.toyworld"]),
    ("api", ["minicraft", "minicraft.api", "minicraft.tune"]),
    ("formats", ["minicraft.formats"]),
    ("fast", ["minicraft.fast"]),
    ("generate", ["minicraft.generate"]),
    ("models", ["minicraft.models"]),
    ("modules", ["minicraft.modules"]),
    ("base", ["minicraft.audio", "minicraft.checks", "minicraft.devices", "minicraft.files", "minicraft.progress"]),
]


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    """The index of the most specific prefix in LAYERS that names this module."""
    best = max(((len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def imports(module: str):
    """(imported minicraft module, line, deferred) for every import statement in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "minicraft" or target.startswith("minicraft."):
                yield target, node.lineno, id(node) not in top_level


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down():
    upward = []
    for module in MODULES:
        for target, line, _ in imports(module):
            if layer_of(target) < layer_of(module):
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{line} ({LAYERS[layer_of(module)][0]}) imports "
                              f"{target} ({LAYERS[layer_of(target)][0]})")
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {module: {t for t, _, _ in imports(module) if t in MODULES and t != module} for module in MODULES}
    for module in graph:                       # a package's __init__ is imported with any of its modules
        graph[module] -= {t for t in graph[module] if module.startswith(t + ".")}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_deferred_imports_say_why():
    unexplained = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node not in tree.body:
                if not re.search(r"#.*deferred", lines[node.lineno - 1]):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == [], "function-level imports without a '# deferred: why' comment:\n" + "\n".join(unexplained)


def test_no_sys_path_edits():
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        assert "sys.path.insert" not in path.read_text().replace('"sys.path.insert"', ""), path


FAST_NAMES = {"fast", "layer_step", "kernels", "in_proj_int8", "step_args", "polyphase", "chunk_frames",
              "fold_cross", "StaticKVCache", "graph"}


def test_reference_layers_know_nothing_of_the_fast_path():
    """modules/, models/, generate/: no import of minicraft.fast, and no name or attribute of it in the code."""
    for module in MODULES:
        if LAYERS[layer_of(module)][0] not in ("generate", "models", "modules"):
            continue
        assert not [t for t, _, _ in imports(module) if t.startswith("minicraft.fast")], module
        tree = ast.parse(MODULES[module].read_text())
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        names |= {arg.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for arg in node.args}
        assert not names & FAST_NAMES, (module, names & FAST_NAMES)
