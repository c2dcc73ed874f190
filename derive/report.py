"""Write a topic's report: check its claims, render each format, write all files or none."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from . import pdf
from .claims import TOPICS
from .core import DeriveError
from .render import certificate, latex, markdown
from .story import Section, Story
from .verify import Settings, check_all

FORMATS = ("tex", "pdf", "json", "md")
DEFAULT_FORMATS = ("tex", "pdf", "json")


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` if needed; refuse a path that is a file or is not writable."""
    if out.exists() and not out.is_dir():
        raise DeriveError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DeriveError(f"--out {out}: cannot create it ({err.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DeriveError(f"--out {out}: not writable")
    return out


def write_atomically(files: dict[Path, bytes]) -> None:
    """Write every file to a temporary name first, then rename them all into place."""
    staged = []
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            staged.append((tmp, path))
    except OSError as err:
        for tmp, _ in staged:
            os.unlink(tmp)
        raise DeriveError(f"cannot write {path}: {err.strerror}") from None
    for tmp, path in staged:
        os.replace(tmp, path)


def build(topic: str, out: Path, formats=DEFAULT_FORMATS, settings: Settings = Settings(),
          progress=None, timings: bool = False):
    """Check a built-in topic's claims and write its report."""
    module = TOPICS[topic]
    if settings == Settings():  # a topic may need more time than the defaults allow
        settings = getattr(module, "SETTINGS", settings)
    return write_report(module.story(), module.claims(), out, formats, settings, progress,
                        timings)


def file_story(path: Path, claims) -> Story:
    """The report of a user's file: one section presenting its claims in order."""
    name = path.stem.replace("_", "-")
    return Story(
        name=name,
        title=rf"The claims of \texttt{{{latex._escape(path.name)}}}",
        abstract=(rf"The claims stated in \texttt{{{latex._escape(path.name)}}}, each proved "
                  r"for a symbolic batch size by named, individually re-checked rules, or "
                  r"refuted with the smallest counterexample, and corroborated independently "
                  r"with every sum written out and on floating-point instances."),
        sections=(Section("Claims", "", tuple(c.id for c in claims)),))


def _figure_files(story: Story) -> dict[str, bytes]:
    """{'NAME.pdf': bytes} of every figure the story places (deterministic bytes)."""
    names = [name for section in story.sections for name, _, _ in section.figures]
    if not names:
        return {}
    from . import figures  # matplotlib: imported only for a story that has figures
    return figures.report_files(names)


def write_report(story: Story, claims, out: Path, formats=DEFAULT_FORMATS,
                 settings: Settings = Settings(), progress=None, timings: bool = False):
    """Check ``claims`` and write ``story``'s report.  Returns (results, written, warnings)."""
    out = prepare_out_dir(out)
    results = check_all(claims, settings, progress)
    return results, *write_results(story, results, out, formats, settings, timings)


def write_results(story: Story, results, out: Path, formats, settings, timings=False):
    """Render checked results in every requested format; all files are written or none."""
    try:
        version = metadata.version("derive")
    except metadata.PackageNotFoundError:
        version = "(source tree)"
    story = replace(story, version=version)
    tex_source = latex.document(story, results, settings, timings)
    files: dict[Path, bytes] = {}
    warnings: list[str] = []
    figures = _figure_files(story) if {"tex", "pdf"} & set(formats) else {}
    # the .tex includes them by name: they are written beside it, with the report's files
    files.update({out / name: data for name, data in figures.items()})
    if "tex" in formats:
        files[out / f"{story.name}.tex"] = tex_source.encode()
    if "json" in formats:
        files[out / f"{story.name}.json"] = certificate.certificate(
            story, results, settings, timings).encode()
        files[out / f"{story.name}.timings.json"] = certificate.timings(results).encode()
    if "md" in formats:
        files[out / f"{story.name}.md"] = markdown.document(story, results).encode()
    if "pdf" in formats:
        try:
            files[out / f"{story.name}.pdf"] = pdf.build_pdf(tex_source, story.name,
                                                             files=figures)
        except pdf.PdfUnavailable as err:
            warnings.append(str(err))
    write_atomically(files)
    return sorted(files), warnings
