"""The shape of the code: imports go one way, and the numpy-only rooms load no TensorFlow."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("cellseg", "beam_pipelines")


def modules():
    """Dotted name -> path of every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


def imports(path, known):
    """The project modules a file imports, at module level or inside functions."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return {name for name in found if name in known}


def cycles(graph):
    """Every import cycle, each as the list of modules around it."""
    found, state, stack = [], {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                found.append(stack[stack.index(other):] + [other])
            elif other not in state:
                visit(other)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return found


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: imports(path, known) - {name} - {"cellseg"} for name, path in known.items()}
    assert {"cellseg.training", "cellseg.segmenter", "cellseg.cli.train"} <= graph.keys()
    assert "cellseg.segmenter" in graph["cellseg.training"]  # the walk sees real edges
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_library_modules_define_no_flags():
    known = modules()
    for name, path in known.items():
        if name.startswith("cellseg.cli"):
            continue
        assert "absl" not in {n.split(".")[0] for n in imports_any(path)}, name


def imports_any(path):
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_scoring_tiling_instances_and_tracking_load_no_tensorflow():
    code = ("import sys; import cellseg.scores, cellseg.ctc, cellseg.instances, cellseg.tiling, cellseg.evaluate, "
            "cellseg.tracking, cellseg.linking, cellseg.staging, cellseg.motility; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.split() == ["False", "False"], result.stderr[-2000:]
    help_text = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['cellseg-evaluate', '--help']\n"
                                "from cellseg.cli import evaluate\ntry:\n    evaluate.run()\nexcept SystemExit:\n"
                                "    pass\nprint('tensorflow' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert "--pred" in help_text.stdout and help_text.stdout.split()[-1] == "False", help_text.stderr[-2000:]


def test_no_module_imports_inside_a_function():
    # Imports at the top say what a module needs; one inside a function hides a dependency (or a cycle).
    hidden = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{name}.{node.name}" for inner in ast.walk(node)
                           if isinstance(inner, (ast.Import, ast.ImportFrom))]
    assert hidden == []


def test_the_benchmarks_import_each_other_one_way():
    folder = os.path.join(ROOT, "benchmarks")
    scripts = {name[:-3] for name in os.listdir(folder) if name.endswith(".py")}
    graph = {}
    for name in scripts:
        found = set()
        for node in ast.walk(ast.parse(open(os.path.join(folder, f"{name}.py")).read())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
        graph[name] = found & scripts - {name}
    assert {"common", "formats", "report"} <= graph.keys() and "formats" in graph["common"]
    assert cycles(graph) == []


def test_no_user_file_is_unpickled_or_evaluated():
    # Models load in Keras' safe mode; nothing cellseg reads goes through pickle, eval or exec.
    for name, path in modules().items():
        tree = ast.parse(open(path).read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        called = {node.func.id for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        keywords = {(kw.arg, getattr(kw.value, "value", None)) for node in ast.walk(tree)
                    if isinstance(node, ast.Call) for kw in node.keywords}
        assert not {"pickle", "dill", "cloudpickle"} & imported, name
        assert not {"eval", "exec"} & called, name
        assert ("safe_mode", False) not in keywords, name
