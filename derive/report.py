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
from .verify import Settings

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


def topic_settings(topic: str, settings: Settings = Settings()) -> Settings:
    """The settings a topic is checked with: its own (``SETTINGS``) for the defaults."""
    if settings == Settings():  # a topic may need more time than the defaults allow
        settings = getattr(TOPICS[topic], "SETTINGS", settings)
    return settings


def build(topic: str, out: Path, formats=DEFAULT_FORMATS, settings: Settings = Settings(),
          progress=None, timings: bool = False, jobs: int = 1, cache=None):
    """Check a built-in topic's claims and write its report.

    ``jobs``: worker processes (``runner.check_many``; 1 checks in this process);
    ``cache``: a ``cache.Cache`` to read and store results and the PDF (None: no cache)."""
    module = TOPICS[topic]
    return write_report(module.story(), module.claims(), out, formats,
                        topic_settings(topic, settings), progress, timings, jobs, cache)


def build_many(topics, out: Path, formats=DEFAULT_FORMATS, settings=None, progress=None,
               timings: bool = False, jobs: int = 1, cache=None, announce=None, claims=None):
    """Check the claims of several topics together (so that the workers never wait for a
    topic to finish), and write each topic's report as soon as its claims are checked (while
    the workers check the next topic's).  ``settings``: {topic: Settings}, default each
    topic's own.  ``claims``: {topic: its claims as the topic builds them}, default built here.
    ``progress(n, total, result)`` counts over all the claims.
    Returns [(topic, results, written, warnings)], in the order of ``topics``."""
    from .runner import check_many
    out = prepare_out_dir(out)
    settings = settings or {}
    claims = claims or {}
    plan = [(t, claims.get(t) or TOPICS[t].claims(), settings.get(t) or topic_settings(t))
            for t in topics]
    # each topic's claim index (ids, expected verdicts, keys): what `derive list` reads to find
    # these claims without building them, and the keys the claims are looked up by here
    keys = [] if cache is not None else None
    for topic, found, topic_set in plan if cache is not None else ():
        index = cache.get_index(topic, topic_set)
        if index is None or [e.id for e in index] != [c.id for c in found]:
            index = cache.put_index(topic, topic_set, found)
        keys += [e.key for e in index]
    every = [c for _, found, _ in plan for c in found]
    per_claim = [s for _, found, s in plan for _ in found]
    complete_at: dict[int, list] = {}   # claims checked -> the topics complete then
    end = 0
    for topic, found, topic_set in plan:
        end += len(found)
        complete_at.setdefault(end, []).append((topic, found, topic_set))
    results: list = []
    built: dict = {}
    drawn: dict = {}
    rendered: dict = {topic: {} for topic, _, _ in plan}
    stories = {topic: TOPICS[topic].story() for topic, _, _ in plan}   # (some take 35 ms)

    def draw():   # the figures need no result: drawn while the workers check
        if {"tex", "pdf"} & set(formats):
            for topic, _, _ in plan:
                drawn[topic] = _figure_files(stories[topic], cache)

    def write(topic, found, topic_set):
        mine = results[len(results) - len(found):] if found else []
        built[topic] = (topic, mine, *write_results(stories[topic], mine, out, formats,
                                                    topic_set, timings, cache,
                                                    drawn.get(topic), rendered[topic]))

    def prerender(topic, topic_set, result):
        """A claim checked here has new bytes, so its report is rendered anew: its own parts
        are rendered now, while the workers check the claims after it."""
        if cache is not None and cache.served(result):
            return
        if {"tex", "pdf"} & set(formats):
            rendered[topic].update(latex.claim_parts(stories[topic], result, topic_set))
        if "json" in formats:
            rendered[topic][("json", result.id)] = certificate.claim_json(
                result, topic_set.budget, timings)

    owner = [(topic, topic_set) for topic, found, topic_set in plan for _ in found]

    for topic, found, topic_set in complete_at.pop(0, []):
        write(topic, found, topic_set)

    def checked(n, total, result):   # called in the claim order
        results.append(result)
        if progress:
            progress(n, total, result)
        prerender(*owner[n - 1], result)
        for topic, found, topic_set in complete_at.get(n, []):
            write(topic, found, topic_set)

    # lazily: a report whose documents are cached never loads its results (cache.Stored)
    check_many(every, per_claim, jobs, checked, cache, announce, lazy=True, meanwhile=draw,
               keys=keys)
    return [built[topic] for topic, _, _ in plan]


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


def _png_figures(story: Story) -> dict[str, bytes]:
    """{'NAME.png': bytes} of every figure the story places, for the Markdown page."""
    names = story.figure_names()
    if not names:
        return {}
    from . import figures
    return {f"{n}.png": figures.render(lambda n=n: figures.report_figure(n), "png")
            for n in names}


def _figure_files(story: Story, cache=None) -> dict[str, bytes]:
    """{'NAME.pdf': bytes} of every figure the story places (deterministic bytes); with
    ``cache``, from it when the same source, versions, matplotlib settings and fonts drew
    them before."""
    names = story.figure_names()
    if not names:
        return {}
    key = None
    if cache is not None:
        from .cache import figures_key
        try:
            key = figures_key(names)
        except Exception:  # noqa: BLE001 -- a matplotlib that cannot be keyed: draw them
            key = None
    found = cache.get_files("figures", key) if key else None
    if found is not None and sorted(found) == sorted(f"{n}.pdf" for n in names) \
            and all(data.startswith(b"%PDF-") for data in found.values()):
        return found
    # the drawing module (matplotlib's figures: about a second) only to draw them
    from . import figures
    found = figures.report_files(names)
    if key:
        cache.put_files("figures", key, found)
    return found


def write_report(story: Story, claims, out: Path, formats=DEFAULT_FORMATS,
                 settings: Settings = Settings(), progress=None, timings: bool = False,
                 jobs: int = 1, cache=None):
    """Check ``claims`` and write ``story``'s report.  Returns (results, written, warnings).

    ``jobs`` and ``cache`` as for ``runner.check_many``: the bytes written are the same."""
    from .runner import check_many
    out = prepare_out_dir(out)
    results = check_many(claims, settings, jobs, progress, cache)
    return results, *write_results(story, results, out, formats, settings, timings, cache)


def write_results(story: Story, results, out: Path, formats, settings, timings=False,
                  cache=None, figures=None, rendered=None):
    """Render checked results in every requested format; all files are written or none.

    With ``cache``, documents whose results, story and settings are unchanged are not
    rendered again, and a PDF whose LaTeX source and figures are unchanged is not built
    again (``cache.documents_key``, ``cache.pdf_key``)."""
    try:
        version = metadata.version("derive")
    except metadata.PackageNotFoundError:
        version = "(source tree)"
    story = replace(story, version=version)
    documents = _documents(story, results, formats, settings, timings, cache, rendered)
    tex_source = documents[".tex"].decode()
    files: dict[Path, bytes] = {}
    warnings: list[str] = []
    if figures is None:   # (``figures``: drawn before, by ``_figure_files``)
        figures = _figure_files(story, cache) if {"tex", "pdf"} & set(formats) else {}
    # the .tex includes them by name: they are written beside it, with the report's files
    files.update({out / name: data for name, data in figures.items()})
    if "md" in formats:   # the Markdown page shows them as PNG, beside it
        files.update({out / name: data for name, data in _png_figures(story).items()})
    for suffix, data in documents.items():
        if suffix.rsplit(".", 1)[-1] in formats:   # ".timings.json" goes with the .json
            files[out / f"{story.name}{suffix}"] = data
    if "pdf" in formats:
        try:
            files[out / f"{story.name}.pdf"] = _pdf(tex_source, story.name, figures, cache)
        except pdf.PdfUnavailable as err:
            warnings.append(str(err))
    write_atomically(files)
    return sorted(files), warnings


def _documents(story: Story, results, formats, settings, timings, cache=None, rendered=None):
    """{suffix: bytes} of the rendered documents: ".tex" always (the PDF is built from it),
    ".json" and ".timings.json", ".md" on request.  With ``cache``, taken from it when the
    same results (by their stored bytes), story, settings and renderer rendered them before."""
    key = cache.documents_key(story, results, formats, settings, timings) if cache else None
    documents = cache.get_documents(key) if key else None
    if documents is not None and ".tex" in documents:
        return documents
    from .cache import loaded
    results = loaded(results)
    documents = {".tex": latex.document(story, results, settings, timings, rendered).encode()}
    if "json" in formats:
        documents[".json"] = certificate.certificate(story, results, settings, timings,
                                                     rendered).encode()
        documents[".timings.json"] = certificate.timings(results).encode()
    if "md" in formats:
        documents[".md"] = markdown.document(story, results).encode()
    if key:
        cache.put_documents(key, documents)
    return documents


def _pdf(tex_source: str, stem: str, figures: dict[str, bytes], cache=None) -> bytes:
    """The PDF of ``tex_source``: from ``cache`` when this source, these figures and these
    TeX tools built it before, else built (and stored)."""
    if cache is None:
        return pdf.build_pdf(tex_source, stem, files=figures)
    from .cache import pdf_key
    key = pdf_key(tex_source, figures)
    data = cache.get_pdf(key)
    if data is None:
        data = pdf.build_pdf(tex_source, stem, files=figures)
        cache.put_pdf(key, data)
    return data
