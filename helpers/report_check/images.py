"""The images a report links: each must be a readable PNG or JPEG file of the submission.

A link that is a URL, an absolute path, outside the folder, missing (letter case counts) or
not a readable PNG/JPEG is a finding; so is a report linking fewer figures than the template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from helpers.report_check.findings import IMAGE, Finding
from helpers.report_check.sections import Part, Template

IMAGE_FORMATS = ("PNG", "JPEG")

_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))")
_HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_DRIVE = re.compile(r"[a-zA-Z]:[\\/]")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")


def image_links(lines: Iterable[str]) -> list[str]:
    """Targets of the markdown and HTML images in `lines`, in order."""
    links = []
    for line in lines:
        links += [m[1] or m[2] for m in _MD_IMAGE.finditer(line)]
        links += [m[1] for m in _HTML_IMAGE.finditer(line)]
    return links


def _is_file_exactly(root: Path, parts: tuple[str, ...]) -> bool:
    """root/parts is a file, with the same letter case (macOS and Windows ignore case)."""
    current = root
    for part in parts:
        if not current.is_dir() or part not in {p.name for p in current.iterdir()}:
            return False
        current = current / part
    return current.is_file()


def _image_problem(folder: Path, link: str) -> str | None:
    target = unquote(link).replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        return "chemin absolu : mettez l'image dans img/ / absolute path: put the image in img/"
    if _SCHEME.match(target):
        return "adresse web, pas un fichier du rendu / a URL, not a file of the submission"
    root = folder.resolve()
    path = (root / target).resolve()
    if not path.is_relative_to(root):
        return "hors du dossier du rendu / outside the submission folder"
    if not _is_file_exactly(root, path.relative_to(root).parts):
        return "fichier absent du rendu / file not in the submission"
    try:
        with Image.open(path) as image:
            image_format = image.format
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # damaged file
        return "image illisible / not a readable image"
    if image_format not in IMAGE_FORMATS:
        return f"format {image_format} : PNG ou JPEG attendu / PNG or JPEG expected"
    return None


def image_findings(title: str, lines: list[str], folder: Path) -> list[Finding]:
    """One finding per distinct link of `lines` that gives no readable image of `folder`."""
    findings = []
    for link in dict.fromkeys(image_links(lines)):
        problem = _image_problem(folder, link)
        if problem:
            findings.append(Finding(title, IMAGE, f"{link} : {problem}", link))
    return findings


def figure_count_findings(spec: Template, report_parts: list[Part]) -> list[Finding]:
    """The report must link at least as many images as the template does."""
    asked = [p for p in spec.parts if image_links(p.lines)]
    wanted = sum(len(image_links(p.lines)) for p in asked)
    linked = sum(len(image_links(p.lines)) for p in report_parts)
    if linked >= wanted:
        return []
    return [Finding(asked[0].title, IMAGE, f"le modèle demande {wanted} figures, le rapport en "
                    f"insère {linked} / the template asks for {wanted} figures, the report "
                    f"links {linked}")]
