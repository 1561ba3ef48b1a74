"""The gallery, built: read -> match -> sample -> thumbnails -> plots -> pages.

GALLERY/
    index.html              counts, thresholds, precision/recall, plots, links
    category-<id>-<n>.html  a sample of the images with labels of that category, paged
    unlabeled-<n>.html      a sample of the images without any label
    almost-<id>-<n>.html    a sample of the images with almost-labels (--predictions)
    thumbs/<id>.jpg         labels (and GT marks) burnt in
    thumbs/almost-<c>-<id>.jpg  the almost-labels of category c over the image's labels
    plots/*.png             threshold plots (when matplotlib is installed)
    unreadable.txt          images that could not be read, with the reason
    gallery.json            what was built, from what; marks the folder as a gallery

An almost-label is a prediction of the run with threshold - band <= score < threshold
for its category's threshold (default band 0.1): what the next lower threshold would
add. Only the sampled images are decoded, so the build time grows with the sample, not
with the labels; reading the labels (and streaming the predictions) is the rest.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from engine.atomic import write_json_atomically, write_text_atomically
from engine.coco.read import CocoSet, load_coco
from engine.errors import UserError
from engine.label.named import exists as named_exists
from engine.label.named import read_image
from engine.review import pages
from engine.review.draw import Job, Mark, make_style, thumbnail_shape, write_thumbnails
from engine.review.match import FALSE, Counts, ImageMatch, match_labels
from engine.review.pages import Card, Raw, esc, link, number, table
from engine.review.plots import Plots, instance_curves, visible_keypoints, write_plots
from engine.review.read import (GroundTruth, NearThreshold, category_records, category_thresholds,
                                keypoint_threshold, match_ground_truth, read_predictions)
from engine.review.sample import Section, sample_ids
from engine.select.sharded import load_label_set

FORMAT = "distill-gallery-v1"
UNREADABLE_LISTED = 100  # the index lists this many unreadable images; unreadable.txt has all
CAPTION_LINES = 6  # almost-labels listed under a thumbnail; the thumbnail shows all


@dataclass
class Settings:
    """What `distill gallery` was asked for (see engine/review/cli.py for each flag)."""

    labels: Path
    images: Path | str  # the folder the labels' file_names are relative to, or an object-storage URL
    out: Path
    predictions: Path | None = None
    gt: Path | None = None
    sample: int = 200
    per_page: int = 50
    seed: int = 0
    workers: int = min(8, os.cpu_count() or 1)
    band: float = 0.1
    progress: bool = False

    def check(self) -> None:
        for flag, value in (("--sample", self.sample), ("--per-page", self.per_page), ("--workers", self.workers)):
            if value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")
        if not 0 < self.band <= 1:
            raise UserError(f"--band must be in (0, 1], got {self.band}")
        if isinstance(self.images, Path) and not self.images.exists():
            raise UserError(f"--images {self.images} does not exist")
        if isinstance(self.images, Path) and not self.images.is_dir():
            raise UserError(f"--images {self.images} is not a folder")
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} exists and is a file, not a folder")


@dataclass
class Summary:
    out: Path
    pages: int
    thumbnails: int
    unreadable: int
    plots: int
    plots_skipped: str | None
    seconds: float


def _prepare_out(out: Path) -> None:
    """Create `out`, or clear the previous gallery in it (only the files a gallery writes);
    a non-empty folder that is no gallery is refused."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / "gallery.json").is_file():
            raise UserError(f"--out {out} is a non-empty folder that holds no gallery (no gallery.json): "
                            "choose an empty or new folder")
        # Marked incomplete before anything goes: a build killed while it clears leaves a
        # folder that neither claims to be whole nor stops being a gallery the next may clear.
        write_json_atomically(out / "gallery.json", {"format": FORMAT, "complete": False})
        for name in ("thumbs", "plots"):
            shutil.rmtree(out / name, ignore_errors=True)
        for path in [*out.glob("*.html"), out / "style.css", out / "unreadable.txt"]:
            path.unlink(missing_ok=True)
    try:
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
        # the marker first: a build that stops half-way leaves a folder the next one may clear
        write_json_atomically(out / "gallery.json", {"format": FORMAT, "complete": False})
    except OSError as error:
        raise UserError(f"cannot create --out {out}: {error.strerror or error}") from None


class Gallery:
    """One build; the steps are methods so each reads alone, in the order they run."""

    def __init__(self, settings: Settings) -> None:
        self.started = time.perf_counter()  # the build's seconds include the reading
        settings.check()
        self.s = settings
        self.labels: CocoSet = load_label_set(settings.labels)
        if not self.labels.images:
            raise UserError(f"--labels {settings.labels} lists no images")
        self.thresholds = category_thresholds(self.labels)
        self.keypoint_threshold = keypoint_threshold(self.labels)
        self.gt: GroundTruth | None = (match_ground_truth(load_coco(settings.gt), self.labels)
                                       if settings.gt else None)
        self.near: NearThreshold | None = None
        if settings.predictions is not None:
            if not any(t is not None for t in self.thresholds.values()):
                raise UserError(f"--labels {settings.labels} records no thresholds (info['thresholds'] of "
                                "distill select): the almost-labels of --predictions cannot be found")
            self.near = read_predictions(settings.predictions, self.labels, self.thresholds, settings.band)
        self.style = make_style(self.labels.categories.values())
        self.counts: dict[int, Counts] = {}
        self.matches: dict[int, ImageMatch] = {}
        if self.gt is not None:
            self.counts, self.matches = match_labels(self.labels.annotations, self.gt.by_image,
                                                     list(self.labels.categories))

    # ---- sections ------------------------------------------------------------------------
    def sections(self) -> tuple[list[Section], Section, list[Section]]:
        """(per category, the images without labels, per category almost-labels)."""
        def by_name(image_id: int) -> str:
            return self.labels.images[image_id]["file_name"]

        having: dict[int, set[int]] = {cid: set() for cid in self.labels.categories}
        for image_id, labels in self.labels.annotations.items():
            for a in labels:
                having[a["category_id"]].add(image_id)
        size, seed = self.s.sample, self.s.seed
        categories = [Section(f"category-{cid}", c["name"],
                              *sample_ids(having[cid], size, seed, f"category-{cid}", by_name))
                      for cid, c in self.labels.categories.items()]
        empty = [i for i, labels in self.labels.annotations.items() if not labels]
        unlabeled = Section("unlabeled", "images without labels",
                            *sample_ids(empty, size, seed, "unlabeled", by_name))
        almost = []
        if self.near is not None:
            near_having: dict[int, set[int]] = {cid: set() for cid in self.labels.categories}
            for image_id, detections in self.near.by_image.items():
                for d in detections:
                    near_having.setdefault(d["category_id"], set()).add(image_id)
            almost = [Section(f"almost-{cid}", f"{c['name']}: almost-labels",
                              *sample_ids(near_having[cid], size, seed, f"almost-{cid}", by_name))
                      for cid, c in self.labels.categories.items()]
        return categories, unlabeled, almost

    # ---- thumbnails ----------------------------------------------------------------------
    def _label_marks(self, image_id: int) -> list[Mark]:
        match = self.matches.get(image_id)
        marks = []
        for i, a in enumerate(self.labels.annotations[image_id]):
            false = match is not None and match.states[i] == FALSE
            score = f"{a['score']:.2f}" if isinstance(a.get("score"), (int, float)) else ""
            marks.append(Mark("false" if false else "label", tuple(a["bbox"]), a["category_id"],
                              f"false {score}".strip() if false else score,
                              tuple(a["keypoints"]) if a.get("keypoints") else None))
        if match is not None:
            marks += [Mark("missed", tuple(g["bbox"]), g["category_id"], "missed") for g in match.missed]
        return marks

    def _near(self, image_id: int, cid: int) -> list[dict]:
        """The almost-labels of category `cid` in an image, highest score first."""
        return sorted((d for d in self.near.by_image.get(image_id, []) if d["category_id"] == cid),
                      key=lambda d: -d["score"])

    def _almost_marks(self, image_id: int, cid: int) -> list[Mark]:
        marks = [Mark("label", tuple(a["bbox"]), a["category_id"]) for a in self.labels.annotations[image_id]]
        kp = self.keypoint_threshold if self.keypoint_threshold is not None else 0.0
        for d in self._near(image_id, cid):
            values = d.get("keypoints")
            keypoints = None
            if values:  # raw predictions carry scores: visible = score >= the keypoint threshold
                keypoints = tuple(v for i in range(0, len(values), 3)
                                  for v in (values[i], values[i + 1], 2.0 if values[i + 2] >= kp else 0.0))
            marks.append(Mark("almost", tuple(d["bbox"]), d["category_id"],
                              f"{d['score']:.2f}<{self.thresholds[d['category_id']]:.2f}", keypoints))
        return marks

    def _source(self, file_name: str) -> Path | str:
        """What names image `file_name` (in unreadable.txt): its path, or its URL."""
        return f"{self.s.images}/{file_name}" if isinstance(self.s.images, str) else self.s.images / file_name

    def _job(self, image_id: int, name: str, marks: list[Mark]) -> Job:
        image = self.labels.images[image_id]
        # Read as the labeler read it: a file, a tar shard's member, a video's frame, an object.
        return Job(self._source(image["file_name"]), self.s.out / "thumbs" / name,
                   image["width"], image["height"], marks, read=partial(read_image, self.s.images, image["file_name"]))

    def thumbnail_jobs(self, shown: set[int], almost: set[tuple[int, int]]) -> list[Job]:
        """The thumbnails to draw: `shown` image ids with their labels, `almost` (category
        id, image id) with that category's almost-labels. UserError when --images holds
        none of their images (the wrong folder, rather than a few unreadable files)."""
        jobs = [self._job(i, f"{i}.jpg", self._label_marks(i)) for i in sorted(shown)]
        jobs += [self._job(i, f"almost-{c}-{i}.jpg", self._almost_marks(i, c)) for c, i in sorted(almost)]
        ids = sorted(shown) + [i for _, i in sorted(almost)]
        if jobs and not any(named_exists(self.s.images, self.labels.images[i]["file_name"]) for i in ids):
            first = self.labels.images[min(shown | {i for _, i in almost})]["file_name"]
            raise UserError(f"--images {self.s.images} holds none of the {len(jobs)} images to draw "
                            f"(e.g. {first!r}): is it the folder the labels were made from?")
        return jobs

    # ---- cards ---------------------------------------------------------------------------
    def _card(self, image_id: int, thumb: str, lines: list[str], unreadable: dict[Path | str, str]) -> Card:
        image = self.labels.images[image_id]
        source = self._source(image["file_name"])
        width, height = thumbnail_shape(image["width"], image["height"])
        # A link to the image itself where it is a file (not a tar member, a frame, an object).
        linked = isinstance(source, Path) and source.is_file()
        target = Path(os.path.relpath(source, self.s.out)).as_posix() if linked else None
        return Card(f"thumbs/{thumb}", width, height, image["file_name"], target, lines, unreadable.get(source))

    def label_card(self, image_id: int, unreadable: dict[Path | str, str]) -> Card:
        per_category: dict[int, list[float]] = {}
        for a in self.labels.annotations[image_id]:
            per_category.setdefault(a["category_id"], []).append(a.get("score", 1.0))
        lines = [f"{self.labels.categories[cid]['name']} \u00d7{len(s)} ({_span(s)})"
                 for cid, s in per_category.items()]
        match = self.matches.get(image_id)
        if match is not None:
            lines.append(f"{match.states.count(FALSE)} false, {len(match.missed)} missed")
        elif self.gt is not None:
            lines.append("no ground truth for this image")
        return self._card(image_id, f"{image_id}.jpg", lines, unreadable)

    def almost_card(self, image_id: int, cid: int, unreadable: dict[Path | str, str]) -> Card:
        near = self._near(image_id, cid)
        name, threshold = self.labels.categories[cid]["name"], self.thresholds[cid]
        lines = [f"{name} {d['score']:.3f} (threshold {threshold:.3f})" for d in near[:CAPTION_LINES]]
        if len(near) > CAPTION_LINES:
            lines.append(f"\u2026 and {len(near) - CAPTION_LINES} more")
        return self._card(image_id, f"almost-{cid}-{image_id}.jpg", lines, unreadable)

    # ---- the whole build -----------------------------------------------------------------
    def build(self) -> Summary:
        out = self.s.out
        categories, unlabeled, almost = self.sections()
        shown = {i for section in [*categories, unlabeled] for i in section.image_ids}
        near_shown = {(_category(section), i) for section in almost for i in section.image_ids}
        jobs = self.thumbnail_jobs(shown, near_shown)
        _prepare_out(out)
        # The plots are drawn beside the thumbnails: matplotlib holds the GIL most of the
        # time, the thumbnail threads mostly run OpenCV without it.
        curves = instance_curves(self.labels, self.thresholds, self.near)
        keypoint_info = (self.labels.thresholds or {}).get("keypoint")
        with ThreadPoolExecutor(max_workers=1) as side:
            plots_done = side.submit(write_plots, out / "plots", curves, visible_keypoints(self.labels), keypoint_info)
            unreadable = write_thumbnails(jobs, self.style, self.s.workers, self.s.progress)
            plots = plots_done.result()
        pages.write_style(out)
        legend = pages.legend({c["name"]: self.style.colors[cid] for cid, c in self.labels.categories.items()},
                              bool(self.style.joints), self.gt is not None, self.near is not None)
        written = []
        for section in categories:
            cid = _category(section)
            plot = plots.files.get(f"category-{cid}")
            figure = f'<p class="plots"><img src="plots/{plot.name}" alt="threshold plot"></p>' if plot else ""
            cards = [self.label_card(i, unreadable) for i in section.image_ids]
            written += pages.write_section(out, section.key, section.title, self._intro(section) + figure + legend,
                                           cards, self.s.per_page)
        cards = [self.label_card(i, unreadable) for i in unlabeled.image_ids]
        written += pages.write_section(out, unlabeled.key, unlabeled.title, self._intro(unlabeled) + legend,
                                       cards, self.s.per_page)
        for section in almost:
            band = (f"<p>Predictions with threshold \u2212 {self.s.band:g} \u2264 score &lt; threshold, dashed, "
                    "over the image's labels.</p>")
            cards = [self.almost_card(i, _category(section), unreadable) for i in section.image_ids]
            written += pages.write_section(out, section.key, section.title, self._intro(section) + band + legend,
                                           cards, self.s.per_page)
        listed = sorted(unreadable.items())
        write_text_atomically(out / "unreadable.txt", "".join(f"{p}\t{reason}\n" for p, reason in listed))
        pages.write_page(out, "index.html", f"Labels: {self.s.labels.name}",
                         self._index(categories, unlabeled, plots, listed, len(jobs)))
        summary = Summary(out, len(written) + 1, len(jobs), len(unreadable), len(plots.files),
                          plots.skipped, time.perf_counter() - self.started)
        write_json_atomically(out / "gallery.json", {
            "format": FORMAT, "complete": True, "labels": str(self.s.labels), "images": str(self.s.images),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.s).items()},
            "pages": ["index.html", *written], "thumbnails": summary.thumbnails,
            "unreadable": {str(p): r for p, r in listed}, "plots": sorted(p.name for p in plots.files.values()),
            "plots_skipped": plots.skipped}, indent=1)
        return summary

    def _intro(self, section: Section) -> str:
        shown = len(section.image_ids)
        sampled = (f"all {shown} images" if shown == section.total
                   else f"a random sample of {shown} of {section.total} images (seed {self.s.seed})")
        return f'<p class="note">{esc(sampled)}, {self.s.per_page} to a page.</p>'

    # ---- the index -----------------------------------------------------------------------
    def _index(self, categories: list[Section], unlabeled: Section, plots: Plots,
               unreadable: list[tuple[Path | str, str]], thumbnails: int) -> str:
        labels, parts = self.labels, []
        n_images = len(labels.images)
        n_labels = sum(len(a) for a in labels.annotations.values())
        parts.append(table(["", "count"], [
            ["images", n_images], ["labels", n_labels], ["images with labels", n_images - unlabeled.total],
            ["images without labels", link(pages.page_name("unlabeled", 1), unlabeled.total)],
            ["thumbnails drawn", thumbnails],
            ["unreadable images", len(unreadable)]]))
        parts.append(Raw(f'<p class="note">Labels {esc(self.s.labels)}, images {esc(self.s.images)}; up to '
                         f"{self.s.sample} sampled images per page list (seed {self.s.seed}), "
                         f"{self.s.per_page} to a page.</p>"))
        parts.append(Raw("<h2>Categories and thresholds</h2>"))
        parts.append(Raw(f"<p>{esc(self._rule())}</p>"))
        parts.append(self._category_table(categories))
        kp = (labels.thresholds or {}).get("keypoint")
        if isinstance(kp, dict):
            parts.append(Raw(f"<p>Keypoints: heatmap peak threshold {number(kp.get('threshold'), 5)} (a peak is "
                             "not a probability and may exceed 1), visible per person "
                             f"{number(kp.get('generated_mean_visible'))} (labeled set "
                             f"{number(kp.get('labeled_mean_visible'))}).</p>"))
        if self.gt is not None:
            ignored = f"; {self.gt.ignored} GT annotations of other categories ignored" if self.gt.ignored else ""
            parts.append(Raw(f'<p class="note">Precision and recall at IoU 0.5 (greedy by score) against '
                             f"{esc(self.gt.path)}: {len(self.gt.by_image)} of {n_images} labeled images have ground "
                             f"truth; crowd regions neither count nor are missed{ignored}.</p>"))
        if self.near is not None:
            parts.append(Raw(f'<p class="note">Almost-labels: predictions of {esc(self.s.predictions)} '
                             f"({self.near.records} images) with threshold \u2212 {self.s.band:g} \u2264 score &lt; "
                             "threshold; a category without a threshold has none.</p>"))
        parts.append(Raw("<h2>Plots</h2>"))
        if plots.skipped:
            parts.append(Raw(f"<p class=\"problem\">Plots skipped: {esc(plots.skipped)}.</p>"))
        else:
            images = "".join(f'<a href="plots/{p.name}"><img src="plots/{p.name}" alt="{esc(k)}" width="384" '
                             f'height="256"></a>' for k, p in plots.files.items())
            parts.append(Raw(f'<div class="plots">{images}</div>'))
        if unreadable:
            parts.append(Raw("<h2>Unreadable images</h2>"))
            rows = [[PurePosixPath(str(p)).name, r] for p, r in unreadable[:UNREADABLE_LISTED]]
            parts.append(table(["file", "reason"], rows))
            parts.append(Raw(f'<p class="note">All {len(unreadable)}: '
                             f'{link("unreadable.txt", "unreadable.txt")}.</p>'))
        return "\n".join(parts)

    def _rule(self) -> str:
        recorded = self.labels.thresholds
        if not recorded:
            return "The labels record no thresholds (not written by distill select)."
        if recorded.get("rule") == "fixed":
            return (f"Fixed rule: score \u2265 {recorded.get('score')}, "
                    f"keypoint heatmap peak \u2265 {recorded.get('keypoint')}.")
        return (f"Calibrated rule on {recorded.get('labeled', 'the labeled set')}: per category, as many labels "
                "per image as the labeled set has instances.")

    def _category_table(self, categories: list[Section]) -> Raw:
        rows_info = category_records(self.labels)
        n_images = len(self.labels.images)
        counts = Counter(a["category_id"] for anns in self.labels.annotations.values() for a in anns)
        headers = ["category", "labels", "images", "labels / image", "labeled set / image", "threshold"]
        if self.gt is not None:
            headers += ["GT", "precision", "recall"]
        if self.near is not None:
            headers += ["almost-labels"]
        rows = []
        for section in categories:
            cid = _category(section)
            row = [link(pages.page_name(section.key, 1), f"{cid} {section.title}"), counts[cid], section.total,
                   number(counts[cid] / n_images), number(rows_info.get(cid, {}).get("labeled_per_image")),
                   number(self.thresholds.get(cid), 5)]
            if self.gt is not None:
                c = self.counts.get(cid, Counts())
                row += [c.gt, number(c.precision), number(c.recall)]
            if self.near is not None:
                row.append(link(pages.page_name(f"almost-{cid}", 1), self.near.counts[cid]))
            rows.append(row)
        return table(headers, rows)


def _category(section: Section) -> int:
    """The category id of a "category-<id>" or "almost-<id>" section."""
    return int(section.key.rsplit("-", 1)[1])


def _span(scores: list[float]) -> str:
    low, high = min(scores), max(scores)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}\u2013{high:.2f}"


def build_gallery(settings: Settings) -> Summary:
    """Build the gallery `settings` ask for; its summary's seconds include reading."""
    return Gallery(settings).build()


def page_weight(out: Path, page: str = "index.html") -> int:
    """Bytes of `page` plus every file it loads (stylesheet, images), read from disk."""
    text = (out / page).read_text(encoding="utf-8")
    loaded = set(re.findall(r'<img [^>]*src="([^"]+)"', text)) | set(re.findall(r'<link [^>]*href="([^"]+)"', text))
    return len(text.encode()) + sum((out / unquote(html.unescape(p))).stat().st_size for p in loaded)
