"""dvc.yaml against the project's imports, statically: ast and yaml only, nothing of the project imported.

    python -m tests.depcheck [ROOT]     # per stage, the project files it runs that its deps miss

A stage's cmd runs ``python -m MODULE``; the files that can execute are the module, the package
``__init__.py`` files above it, and, transitively, every project module it imports (at module
level or inside a function: a lazy import still decides the output). A dep covers a file when it
names the file or a folder above it. Test-only tooling, so it lives under tests/: no stage runs
it, and in pipeline/ it would itself be a file of the package the stages depend on.

What counts as an import:
    ``import a.b.c``            a/__init__.py, a/b/__init__.py, a/b/c.py (or a/b/c/__init__.py)
    ``from a.b import c``       a.b's files, and a/b/c.py when ``c`` is a submodule
    ``from . import c``         resolved against the importing module's package
    lazy registries             a module whose function calls ``importlib.import_module`` (a loader)
                                and whose string literals name dotted project modules
                                (``"candidates.covisit:Covisit"``, ``"features.item"``): every module
                                that references the loader (``source_class``, ``registry.family``)
                                imports all of those modules, since params pick which one loads
Imports under ``if TYPE_CHECKING:`` never run, so they do not count. Every package ``__init__.py`` on the
way counts, a docstring-only one too: it runs, and an edit may add code that changes an output.

dvc.yaml: plain stages, ``foreach`` over a list, a dict or a ``${...}`` reference into params.yaml
(or ``vars``), and ``matrix``; ``${item}``, ``${item.x}``, ``${key}`` and params references are
interpolated as far as they resolve (unresolved ones stay literal; only the module name matters).
"""

from __future__ import annotations

import ast
import itertools
import posixpath
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGES = ("core", "pipeline", "candidates", "features", "rankers", "titles")

_REF = re.compile(r"\$\{\s*([^}]+?)\s*\}")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?::\w+)?$")


@dataclass(frozen=True)
class Import:
    """One project file ``src`` makes run, at ``src``'s line ``line`` (paths relative to the root)."""

    src: str
    dst: str
    line: int


@dataclass(frozen=True)
class Stage:
    """One expanded dvc.yaml stage (``name@item`` for foreach/matrix), with the modules its cmd runs."""

    name: str
    cmd: str
    deps: tuple[str, ...]
    modules: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """Project file ``file`` runs in ``stage`` but no dep covers it; ``chain`` is how it is reached."""

    stage: str
    file: str
    chain: tuple[Import, ...]

    def __str__(self) -> str:
        via = " <- ".join(f"{i.src}:{i.line}" for i in reversed(self.chain)) or "(the stage's module)"
        return f"stage {self.stage}: {self.file} is not covered by its deps (imported via {via})"


# --------------------------------------------------------------------------------------------
# imports


class Project:
    """The project packages under ``root``, parsed on demand (each file once)."""

    def __init__(self, root: Path | str, packages: Iterable[str] = PACKAGES):
        self.root = Path(root)
        self.packages = tuple(packages)
        self._edges: dict[str, tuple[Import, ...]] = {}
        self._trees: dict[str, ast.Module] = {}
        self._source: dict[str, str] = {}
        self._registries: dict[str, tuple[frozenset[str], bool, tuple[str, ...]]] = {}

    def module_file(self, name: str) -> str | None:
        """``a.b`` -> ``a/b.py`` or ``a/b/__init__.py`` when it is a project module, else None."""
        parts = name.split(".")
        if parts[0] not in self.packages:
            return None
        base = "/".join(parts)
        for rel in (f"{base}.py", f"{base}/__init__.py"):
            if (self.root / rel).is_file():
                return rel
        return None

    def is_package(self, name: str) -> bool:
        return name.split(".")[0] in self.packages and (self.root / name.replace(".", "/")).is_dir()

    def files_run_by(self, name: str) -> list[str]:
        """Files importing module ``name`` executes itself: each package ``__init__`` then the module."""
        parts = name.split(".")
        files = []
        for i in range(1, len(parts) + 1):
            rel = self.module_file(".".join(parts[:i]))
            if rel is not None:
                files.append(rel)
        return files

    def files(self) -> list[str]:
        """Every .py file of the project packages, relative to the root, sorted."""
        return sorted(
            p.relative_to(self.root).as_posix()
            for pkg in self.packages
            for p in (self.root / pkg).rglob("*.py")
            if "__pycache__" not in p.parts
        )

    def imports(self, rel: str) -> tuple[Import, ...]:
        """The project files ``rel`` imports directly, in source order, each once."""
        if rel not in self._edges:
            self._edges[rel] = tuple(self._parse(rel))
        return self._edges[rel]

    def _module_name(self, rel: str) -> tuple[str, str]:
        """(module name, its package) of file ``rel``."""
        parts = rel[: -len(".py")].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
            return ".".join(parts), ".".join(parts)
        return ".".join(parts), ".".join(parts[:-1])

    def _parse(self, rel: str) -> Iterator[Import]:
        tree = self._tree(rel)
        _, package = self._module_name(rel)
        seen: set[str] = set()

        def emit(names: Iterable[str], line: int) -> Iterator[Import]:
            for dst in names:
                if dst != rel and dst not in seen:
                    seen.add(dst)
                    yield Import(rel, dst, line)

        bound: dict[str, str] = {}  # local name -> what it names ("pkg.mod" or "pkg.mod.attr")
        references: list[ast.expr] = []
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Name | ast.Attribute):
                references.append(node)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    bound[alias.asname or top] = alias.name if alias.asname else top
                    yield from emit(self.files_run_by(alias.name), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node.module, node.level, package)
                if base is None:
                    continue
                found = self.files_run_by(base)
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
                    sub = self.module_file(f"{base}.{alias.name}") if alias.name != "*" else None
                    if sub is not None:
                        found.append(sub)
                yield from emit(found, node.lineno)
        # lazy registries: a loader's targets run wherever the loader is referenced
        loaders, at_import, targets = self._registry(rel)
        if targets and at_import:
            yield from emit(targets, 1)
        for name in loaders:
            bound.setdefault(name, f"{self.module_of(rel)}.{name}")
        for node in references:
            dotted = _dotted(node)
            head, _, tail = (dotted or "").partition(".")
            if head not in bound:
                continue
            module, _, func = (bound[head] + (f".{tail}" if tail else "")).rpartition(".")
            registry = self.module_file(module) if module else None
            if registry is not None:
                funcs, _, found = self._registry(registry)
                if func in funcs:
                    yield from emit(found, node.lineno)

    def _tree(self, rel: str) -> ast.Module:
        if rel not in self._trees:
            self._source[rel] = (self.root / rel).read_text(encoding="utf-8")
            self._trees[rel] = ast.parse(self._source[rel], filename=rel)
        return self._trees[rel]

    def _registry(self, rel: str) -> tuple[frozenset[str], bool, tuple[str, ...]]:
        """(loader function names, whether it loads at import time, target files) of module ``rel``.

        A loader is a function calling ``importlib.import_module``, ``import_module`` or
        ``__import__``; the targets are the dotted project-module string literals of the module
        (``"candidates.covisit:Covisit"``, ``"features.item"``).
        """
        if rel not in self._registries:
            tree = self._tree(rel)
            if "import_module" not in self._source[rel] and "__import__" not in self._source[rel]:
                self._registries[rel] = (frozenset(), False, ())
                return self._registries[rel]
            loaders: set[str] = set()
            at_import = False
            for node in tree.body:
                funcs = [node] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else []
                if isinstance(node, ast.ClassDef):
                    funcs = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
                if funcs:
                    loaders.update(f.name for f in funcs if any(_is_dynamic_import(n) for n in ast.walk(f)))
                elif any(_is_dynamic_import(n) for n in ast.walk(node)):
                    at_import = True
            targets: list[str] = []
            if loaders or at_import:
                for node in ast.walk(tree):
                    is_str = isinstance(node, ast.Constant) and isinstance(node.value, str)
                    if is_str and _DOTTED.match(node.value):
                        name = node.value.partition(":")[0]
                        if self.module_file(name) is not None:
                            targets += [f for f in self.files_run_by(name) if f not in targets]
            self._registries[rel] = (frozenset(loaders), at_import, tuple(targets))
        return self._registries[rel]

    def registry_targets(self, rel: str) -> tuple[str, ...]:
        return self._registry(rel)[2]

    def closure(self, module: str) -> dict[str, tuple[Import, ...]]:
        """Every project file running ``python -m module`` can execute -> the import chain reaching it."""
        reached: dict[str, tuple[Import, ...]] = {}
        queue: list[str] = []
        for rel in self.files_run_by(module):
            reached[rel] = ()
            queue.append(rel)
        while queue:
            src = queue.pop(0)
            for imp in self.imports(src):
                if imp.dst not in reached:
                    reached[imp.dst] = (*reached[src], imp)
                    queue.append(imp.dst)
        return reached

    def module_of(self, rel: str) -> str:
        return self._module_name(rel)[0]


def _absolute(module: str | None, level: int, package: str) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` inside ``package``."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


def _is_dynamic_import(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id in ("import_module", "__import__")) or (
        isinstance(f, ast.Attribute) and f.attr == "import_module"
    )


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain that is read (not assigned), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Load):
        return None
    return ".".join([node.id, *reversed(parts)])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, minus the bodies of ``if TYPE_CHECKING:`` (their ``else`` still runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


# --------------------------------------------------------------------------------------------
# dvc.yaml


def _lookup(expr: str, context: Mapping) -> object:
    value: object = context
    for part in expr.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(expr)
    return value


def interpolate(value: object, context: Mapping) -> object:
    """``${a.b}`` references in strings (recursively in lists/dicts) replaced where they resolve.

    A string that is exactly one reference becomes the referenced value itself (a foreach over
    ``${candidates.sources}`` iterates the dict).
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value.strip())
        if whole:
            try:
                return _lookup(whole.group(1), context)
            except KeyError:
                return value

        def sub(m: re.Match) -> str:
            try:
                found = _lookup(m.group(1), context)
            except KeyError:
                return m.group(0)
            if isinstance(found, bool):
                return "true" if found else "false"
            if _scalar(found):
                return str(found)
            return yaml.safe_dump(found, default_flow_style=True).removesuffix("\n...\n").strip()

        return _REF.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, context) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, context) for k, v in value.items()}
    return value


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool)


def _expand(name: str, body: dict, context: Mapping) -> Iterator[tuple[str, dict, dict]]:
    """(stage name, stage body, local context) for each stage ``name`` expands to."""
    if "foreach" in body:
        items = interpolate(body["foreach"], context)
        do = body.get("do", {})
        if isinstance(items, Mapping):
            for key, item in items.items():
                yield f"{name}@{key}", do, {"key": key, "item": item}
        elif isinstance(items, list):
            for i, item in enumerate(items):
                yield f"{name}@{item if _scalar(item) else i}", do, {"key": i, "item": item}
        else:
            raise ValueError(f"stage {name}: foreach {body['foreach']!r} does not resolve to a list or dict")
    elif "matrix" in body:
        matrix = {k: interpolate(v, context) for k, v in body["matrix"].items()}
        rest = {k: v for k, v in body.items() if k != "matrix"}
        for combo in itertools.product(*(
            [(k, i, v) for i, v in enumerate(values)] for k, values in matrix.items()
        )):
            item = {k: v for k, _, v in combo}
            suffix = "-".join(str(v) if _scalar(v) else f"{k}{i}" for k, i, v in combo)
            yield f"{name}@{suffix}", rest, {"item": item}
    else:
        yield name, body, {}


def python_modules(cmd: str) -> list[str]:
    """Modules a shell command runs with ``python [-X ...] -m MODULE`` (or ``python path/to/x.py``)."""
    found = []
    for line in re.split(r"&&|\|\||;|\n", cmd):
        try:
            tokens = shlex.split(line)
        except ValueError:
            tokens = line.split()
        for i, tok in enumerate(tokens):
            if not re.fullmatch(r"(?:.*/)?python(?:\d+(?:\.\d+)*)?", tok):
                continue
            rest = tokens[i + 1 :]
            while rest:
                if rest[0] == "-m" and len(rest) > 1:
                    found.append(rest[1])
                    break
                if rest[0].startswith("-m") and len(rest[0]) > 2:
                    found.append(rest[0][2:])
                    break
                if rest[0].endswith(".py") and not rest[0].startswith("-"):
                    found.append(rest[0][: -len(".py")].lstrip("./").replace("/", "."))
                    break
                if rest[0] in ("-X", "-W") and len(rest) > 1:
                    rest = rest[2:]
                elif rest[0].startswith("-"):
                    rest = rest[1:]
                else:
                    break
    return found


def _yaml(text: str) -> object:
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _load_vars(root: Path, doc: dict) -> dict:
    context: dict = {}
    entries = doc.get("vars") or []
    if not any(isinstance(e, str) and e.split(":")[0] == "params.yaml" for e in entries):
        entries = ["params.yaml", *entries]
    for entry in entries:
        if isinstance(entry, dict):
            context.update(entry)
            continue
        path, _, keys = str(entry).partition(":")
        if not (root / path).is_file():
            continue
        data = _yaml((root / path).read_text(encoding="utf-8")) or {}
        if keys:
            data = {k: data[k] for k in keys.split(",") if k in data}
        context.update(data)
    return context


def load_stages(root: Path | str, dvc_yaml: str = "dvc.yaml") -> list[Stage]:
    """Every expanded stage of ``root/dvc_yaml``, in file order."""
    root = Path(root)
    doc = _yaml((root / dvc_yaml).read_text(encoding="utf-8")) or {}
    context = _load_vars(root, doc)
    stages = []
    for name, body in (doc.get("stages") or {}).items():
        for full, stage, local in _expand(name, body, context):
            ctx = {**context, **local}
            cmd = interpolate(stage.get("cmd", ""), ctx)
            cmd = " && ".join(cmd) if isinstance(cmd, list) else str(cmd)
            deps = []
            for dep in interpolate(stage.get("deps") or [], ctx):
                dep = next(iter(dep)) if isinstance(dep, dict) else dep
                deps.append(posixpath.normpath(str(dep)))
            stages.append(Stage(full, cmd, tuple(deps), tuple(python_modules(cmd))))
    return stages


# --------------------------------------------------------------------------------------------
# the checks


def covered(rel: str, deps: Iterable[str]) -> bool:
    """Whether a dep names file ``rel`` or a folder above it."""
    return any(rel == d or d in (".", "") or rel.startswith(d.rstrip("/") + "/") for d in deps)


def stage_closure(project: Project, stage: Stage) -> dict[str, tuple[Import, ...]]:
    reached: dict[str, tuple[Import, ...]] = {}
    for module in stage.modules:
        for rel, chain in project.closure(module).items():
            reached.setdefault(rel, chain)
    return reached


def undeclared(root: Path | str, dvc_yaml: str = "dvc.yaml", project: Project | None = None) -> list[Finding]:
    """Project files each stage runs that its deps do not cover."""
    project = project or Project(root)
    findings = []
    for stage in load_stages(root, dvc_yaml):
        for rel, chain in sorted(stage_closure(project, stage).items()):
            if not covered(rel, stage.deps):
                findings.append(Finding(stage.name, rel, chain))
    return findings


def unused(root: Path | str, dvc_yaml: str = "dvc.yaml",
           project: Project | None = None) -> list[tuple[str, str]]:
    """(stage, dep) for each dep inside the project packages that covers none of the files the stage runs.

    Such a dep reruns the stage for edits that cannot change its output. Data files, templates
    and other non-Python deps inside a package folder (``candidates/recall_plot.json``) are left alone.
    """
    project = project or Project(root)
    out = []
    for stage in load_stages(root, dvc_yaml):
        if not stage.modules:
            continue
        files = stage_closure(project, stage)
        for dep in stage.deps:
            in_packages = dep.split("/")[0] in project.packages
            is_source = dep.endswith(".py") or (project.root / dep).is_dir()
            if in_packages and is_source and not any(covered(f, [dep]) for f in files):
                out.append((stage.name, dep))
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    project = Project(root)
    findings = undeclared(root, project=project)
    for f in findings:
        print(f)
    for stage, dep in unused(root, project=project):
        print(f"stage {stage}: dep {dep} covers no file the stage runs")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
