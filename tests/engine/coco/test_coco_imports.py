"""engine.coco is torch-free and depends on no other engine package but `errors` and `json_file`: the
trainer, selection, review, conversion, plans and export parity all import it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_importing_engine_coco_imports_no_torch_pycocotools_or_other_engine_packages():
    code = ("import sys, engine.coco.schema, engine.coco.categories, engine.coco.read, engine.coco.geometry, "
            "engine.coco.evaluate; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pycocotools') or "
            "(m.startswith('engine.') and m.split('.')[1] not in ('coco', 'errors', 'json_file'))]; "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
