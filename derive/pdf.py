"""Compile a .tex file to PDF with latexmk and pdflatex, shell escape off."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .core import DeriveError

INSTALL_HINT = ("install a TeX engine for the PDF: sudo apt-get install "
                "texlive-latex-recommended latexmk")


class PdfUnavailable(DeriveError):
    """No TeX engine on this machine."""


def tex_available() -> bool:
    return all(shutil.which(tool) for tool in ("latexmk", "pdflatex"))


def build_pdf(tex_source: str, stem: str, timeout: float = 180,
              files: dict[str, bytes] | None = None) -> bytes:
    """The PDF bytes for ``tex_source``, compiled in a private temporary directory.

    ``files`` ({name: bytes}, the figures it includes) are written beside it first."""
    if not tex_available():
        raise PdfUnavailable(f"PDF not written: no latexmk/pdflatex; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="derive-tex-") as tmp:
        src = Path(tmp, f"{stem}.tex")
        src.write_text(tex_source, encoding="utf-8")
        for name, data in (files or {}).items():
            Path(tmp, name).write_bytes(data)
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
        cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
               "-pdflatex=pdflatex -no-shell-escape %O %S", "-quiet", src.name]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DeriveError(f"PDF not written: latexmk ran longer than {timeout:g} s")
        pdf = Path(tmp, f"{stem}.pdf")
        if proc.returncode != 0 or not pdf.exists():
            log = Path(tmp, f"{stem}.log")
            errors = [ln for ln in (log.read_text(errors="replace").splitlines()
                                    if log.exists() else []) if ln.startswith("!")]
            first = errors[0] if errors else (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise DeriveError(f"PDF not written: LaTeX failed: {first}")
        return pdf.read_bytes()
