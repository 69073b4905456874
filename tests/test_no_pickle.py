"""Nothing the package reads can run code: no pickle (or a library that loads pickles)
anywhere in it, so a shared or downloaded run, study or cache directory is data only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hamnet_jax"
# modules whose loading runs code named by the file
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNSAFE_CALLS = {("torch", "load"), ("pd", "read_pickle"), ("pandas", "read_pickle"), ("np", "load_pickle")}


def unsafe_uses(source: str) -> list[str]:
    """What in `source` could load a pickle: imports of the modules above, `torch.load` /
    `read_pickle` calls, and any `allow_pickle=` that is not the constant False."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and \
                    (func.value.id, func.attr) in UNSAFE_CALLS:
                found.append(f"{func.value.id}.{func.attr}(...)")
            if isinstance(func, ast.Attribute) and func.attr == "read_pickle":
                found.append("read_pickle(...)")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"allow_pickle={ast.unparse(kw.value)}")
    return found


def test_the_package_never_loads_a_pickle():
    offenders = {str(p.relative_to(PACKAGE)): unsafe_uses(p.read_text()) for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_finds_each_kind_of_unsafe_load():
    source = ("import pickle\nfrom joblib import load\nimport torch\nx = torch.load('m.pt')\n"
              "import numpy as np\ny = np.load('a.npy', allow_pickle=True)\nz = np.load('b.npy', allow_pickle=flag)\n"
              "import pandas as pd\nw = pd.read_pickle('f')\nok = np.load('c.npy', allow_pickle=False)\n")
    assert unsafe_uses(source) == ["import pickle", "from joblib import ...", "torch.load(...)",
                                   "allow_pickle=True", "allow_pickle=flag", "pd.read_pickle(...)", "read_pickle(...)"]
