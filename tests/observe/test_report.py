"""``tfx-canary report`` on real releases (model server, router, controller, MLMD on loopback): the pages
say what happened, load in a real headless Chromium without console errors or outside requests, and
their plots are drawn (screenshot pixels); bad input is one clear error and writes nothing."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from release import operations
from rollout.analysis import Criteria
from rollout.controller import RolloutController, parse_plan
from rollout.load import SteadyLoad
from tests.observe import chromium
from tests.rollout.bad_models import write_failing_model
from tests.rollout.stable_release import stable_behind_router
from tfx_canary import cli

CRITERIA = Criteria(min_requests=20, p99_slack_s=0.15)  # a shared 2-core box: latency gets a wide margin


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """v1 first stable; v2 promoted through shadow and 100%; v3 (every predict fails) rolled back."""
    from fixtures.models import write_fixture_model

    home = tmp_path_factory.mktemp("report")
    with stable_behind_router(home) as (served, target, router, _store):
        url = f"http://127.0.0.1:{router.port}/monitoring/prometheus/metrics"
        with SteadyLoad(router.port, "m", threads=2, rate=40) as load:
            write_fixture_model(served.base_path, 2, offset=2.01)  # a good retrain: nearly the same
            for version, expected in ((2, "promoted"), (3, "rolled back")):
                if version == 3:
                    write_failing_model(served.base_path, 3)
                operations.publish(target, version)
                plan = parse_plan("shadow=1s,100%=1s")
                outcome = RolloutController(target, url, plan, CRITERIA, max_extensions=3).run()
                assert outcome.verdict == expected, outcome.steps
            load.stop()
    return home


def report(*argv: str) -> int:
    return cli.main(["report", *argv])


@pytest.fixture(scope="module")
def pages(home: Path) -> dict[int, Path]:
    assert report("--home", str(home), "--model", "m") == 0
    directory = home / "reports" / "m"
    return {int(p.stem.split("-")[1]): p for p in directory.glob("release-*.html")}


def test_one_page_per_release_with_its_timeline_steps_and_verdicts(home, pages, capsys) -> None:
    assert sorted(pages) == [1, 2, 3]
    first = pages[1].read_text()
    assert "first stable version" in first and "No analysed step" in first
    promoted = pages[2].read_text()
    assert "m: release of version 2" in promoted and ">promoted<" in promoted
    steps = re.findall(r"<h3>Step (\S+) <span[^>]*>(\w+)</span>", promoted)
    assert steps == [("shadow", "pass"), ("100%", "pass")]
    for kind in ("phase1", "canary-start", "traffic", "promote"):
        assert f"<td>{kind}</td>" in promoted
    assert promoted.count('src="data:image/png;base64,') == 3  # the timeline and one figure per step
    assert "analysis-" in promoted and str(home / "releases" / "m") in promoted
    rolled_back = pages[3].read_text()
    assert ">rolled back<" in rolled_back
    assert re.findall(r"<h3>Step (\S+) <span[^>]*>(\w+)</span>", rolled_back) == [("shadow", "fail")]
    assert re.search(r"<li>error rate 100\.00% vs stable 0\.00%</li>", rolled_back), rolled_back[-3000:]
    index = (home / "reports" / "m" / "index.html").read_text()
    assert all(f'href="release-{v}.html"' in index for v in (1, 2, 3))
    assert report("--home", str(home), "--model", "m", "--release", "3", "--json") == 0
    assert '"pages": [\n  "' + str(pages[3]) in capsys.readouterr().out


def blank(region: Image.Image) -> bool:
    colors = region.getcolors(maxcolors=1 << 16) or []
    inked = sum(count for count, rgb in colors if sum(rgb[:3]) < 720)  # not white or nearly
    return len(colors) < 20 or inked < 0.02 * region.width * region.height


def has_color(region: Image.Image, rgb: tuple[int, int, int], share: float = 0.002) -> bool:
    hits = sum(
        count
        for count, pixel in region.getcolors(maxcolors=1 << 16) or []
        if all(abs(a - b) <= 12 for a, b in zip(pixel[:3], rgb, strict=True))
    )
    return hits >= share * region.width * region.height


@pytest.mark.parametrize("version", [2, 3])
def test_the_page_loads_in_chromium_and_shows_its_plots(pages, version: int) -> None:
    loaded = chromium.load(pages[version])
    assert loaded.console == [], loaded.console
    outside = [url for url in loaded.requests if not url.startswith("data:")]
    assert outside == [pages[version].resolve().as_uri()]  # self-contained: nothing else fetched
    assert loaded.title == f"m: release of version {version}"
    assert len(loaded.images) == 3 if version == 2 else 2
    screenshot = Image.open(io.BytesIO(loaded.screenshot)).convert("RGB")
    for image in loaded.images:
        assert image["complete"] and image["width"] > 500 and image["src"] == "data:image/png;base64,"
        assert image["w"] > 500 and image["h"] > 150, image  # laid out at a readable size
        box = (image["x"], image["y"], image["x"] + image["w"], image["y"] + image["h"])
        region = screenshot.crop(tuple(round(v) for v in box))
        assert not blank(region), f"{image['alt']}: the plot is blank in the screenshot"
        if image["alt"].startswith("step"):  # canary (orange) drawn beside stable (blue)
            assert has_color(region, (0x1F, 0x77, 0xB4)) and has_color(region, (0xFF, 0x7F, 0x0E)), image[
                "alt"
            ]
    margin = screenshot.crop((0, 0, 12, screenshot.height))  # the body's left margin: page background
    assert blank(margin)  # the check tells an empty strip from a plot


def test_the_browser_check_sees_console_errors_and_broken_images(tmp_path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><title>x</title><script>console.error("planted")</script>'
        '<img alt="broken" src="data:image/png;base64,AAAA">'
    )
    loaded = chromium.load(page)
    assert loaded.console == ["planted"]
    assert loaded.images[0]["width"] == 0


def test_bad_input_is_one_clear_error_and_writes_nothing(home, tmp_path, capsys) -> None:
    assert report("--home", str(home), "--model", "nope") == 1
    assert capsys.readouterr().err.strip() == (
        "error: no release history for model 'nope': nothing to report (wrong --home or --model?)"
    )
    assert report("--home", str(home), "--model", "m", "--release", "99") == 2
    assert "has no release of version 99; it has [1, 2, 3]" in capsys.readouterr().err
    assert report("--home", str(tmp_path / "empty"), "--model", "m") == 1
    assert "error: no ML Metadata at" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()  # not even an empty store
    copy = tmp_path / "copy"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("reports", "serving", "logs"))
    analyses = sorted((copy / "releases" / "m").glob("analysis-*.json"))
    assert len(analyses) >= 3
    analyses[0].unlink()
    assert report("--home", str(copy), "--model", "m") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: m: the analysis behind generation ")
    assert f"its file {analyses[0]} is missing" in err[0]
    assert not (copy / "reports").exists()  # nothing half-written
