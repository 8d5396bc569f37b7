"""appliance.core is pure: it imports only the standard library, pynacl and rfc8785, and does no
I/O and no clock reads, so the offline verifier can load it alone and tests need no fixtures."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "appliance" / "core"
THIRD_PARTY_ALLOWED = {"nacl", "rfc8785"}
IO_MODULES = {"socket", "subprocess", "sqlite3", "pathlib", "shutil", "tempfile", "time", "io", "urllib", "http"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_core_imports_only_stdlib_pynacl_and_rfc8785():
    for path in core_modules():
        for name in imported_names(ast.parse(path.read_text(), str(path))):
            top = name.split(".")[0]
            if top == "appliance":
                assert name.startswith("appliance.core"), f"{path.name} imports {name} from outside core"
                continue
            assert top in sys.stdlib_module_names or top in THIRD_PARTY_ALLOWED, f"{path.name} imports {name}"
            assert top not in IO_MODULES, f"{path.name} imports I/O module {name}"


def test_core_opens_no_files_and_reads_no_clock():
    for path in core_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{path.name}:{node.lineno} opens a file"
            if isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, f"{path.name}:{node.lineno} reads a clock"


def test_importing_core_loads_no_other_third_party_package():
    modules = [f"appliance.core.{p.stem}" for p in core_modules() if p.stem != "__init__"]
    script = (
        "import sys, sysconfig\n"
        "before = set(sys.modules)\n"
        f"for m in {modules!r}: __import__(m)\n"
        "site = sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']\n"
        "print('\\n'.join(sorted({n.split('.')[0] for n, m in sys.modules.items()"
        " if n not in before and getattr(m, '__file__', None) and m.__file__.startswith(site)})))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    outside = set(loaded.stdout.split()) - THIRD_PARTY_ALLOWED - {"_cffi_backend", "_sodium", "cffi", "appliance"}
    assert not outside, f"importing appliance.core loaded {sorted(outside)}"
