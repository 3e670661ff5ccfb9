"""The zip handed to students: the release notebooks and `helpers/`, without `autograder/`.

This repository is the instructor's: `autograder/` holds the solutions and hidden checks, so
students get this pack instead of a clone. It installs the same way (`pip install -r
requirements.txt`), with a pyproject that packages `helpers` only, plus the student's
JupyterLab settings (`student_jupyter/`: nbgrader's Validate button without its instructor tools).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from autograder.build.course import REPO_ROOT

PACK_NAME = "lora-lab"
SHIPPED = [
    "notebooks/*.ipynb",
    "helpers/**/*.py",
    "data/README.md",
    "img/README.md",
    "rapport_template.md",
    "nbgrader_config.py",
    "student_jupyter/pyproject.toml",
    "student_jupyter/**/*.json",
]
STUDENT_JUPYTER_REQUIREMENT = """
# the student's JupyterLab settings (nbgrader's Validate button only), see student_jupyter/
./student_jupyter
"""
STUDENT_README = """# LoRA from scratch — student pack

1. Optionally create a virtual environment: `python -m venv .venv`, then activate it.
2. Install: `pip install -r requirements.txt`, then check: `python -m helpers`.
3. Run `jupyter lab` here, open `notebooks/01_lora_layer.ipynb` and work in order up to
   `06_inference.ipynb`. Keep the six notebooks together in `notebooks/`: each one reuses your
   code from the previous ones. A "✏️ Exercise" banner names what each exercise cell must
   define; the cells after it check your code. The **Validate** button of the notebook's
   toolbar runs the whole notebook with its checks and says whether they pass.
4. Write `rapport.md` from `rapport_template.md` with your own outputs; the plots are saved
   in `img/`. Check it: `python -m helpers.report_check .` lists what is left to fix
   (template text, missing images, numbers that appear in none of your notebooks' outputs).
5. Hand in the six executed notebooks, `rapport.md` and `img/`.

Downloads (SMS Spam Collection, GPT-2 weights, ~550 MB) go to `data/` on first use. Without
internet: see `data/README.md`.
"""


def _student_pyproject() -> str:
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    text = re.sub(r'include = \[[^\]]*\]', 'include = ["helpers*"]', text)
    return re.sub(r"\n\[tool\.pytest\.ini_options\].*", "\n", text, flags=re.S)


def build_student_pack(dest: Path) -> Path:
    """Write `dest/lora-lab.zip` (everything under a top folder `lora-lab/`)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive_path = dest / f"{PACK_NAME}.zip"
    tmp = archive_path.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for pattern in SHIPPED:
            for path in sorted(REPO_ROOT.glob(pattern)):
                archive.write(path, f"{PACK_NAME}/{path.relative_to(REPO_ROOT).as_posix()}")
        archive.writestr(f"{PACK_NAME}/pyproject.toml", _student_pyproject())
        requirements = (REPO_ROOT / "requirements.txt").read_text(encoding="utf-8")
        archive.writestr(f"{PACK_NAME}/requirements.txt", requirements + STUDENT_JUPYTER_REQUIREMENT)
        archive.writestr(f"{PACK_NAME}/README.md", STUDENT_README)
    tmp.replace(archive_path)
    return archive_path
