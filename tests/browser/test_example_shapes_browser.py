"""Apps shaped like bokeh's own examples (crossfilter, export_csv, gapminder, selection_histogram),
driven in headless Chromium: what a user does in each, and the Python callback's effect in the page.

The apps (``tests/apps/shapes/``) are written for these tests, on synthetic data, in the shapes
of bokeh's examples: widgets replacing a figure from Python, a table filtered in Python with a
CustomJS export, a play button adding and removing a periodic callback, and a selection made in
the browser feeding histograms computed in Python. Run them against bokeh serve with
``BOKEH_FLASK_TEST_SERVER=bokeh``: the same tests pass there.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the 'playwright' package")
from playwright.sync_api import expect  # noqa: E402

SHAPES = Path(__file__).resolve().parents[1] / "apps" / "shapes"
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(serve_module):
    return serve_module(*sorted(SHAPES.glob("*.py")))


def open_app(page, server, app):
    response = page.goto(server.app_url(app))
    assert response is not None and response.status == 200
    page.wait_for_function("() => window.Bokeh !== undefined && Bokeh.documents.length === 1")


def test_crossfilter_selects_rebuild_the_figure_in_python(page, console, server):
    open_app(page, server, "crossfilter")
    expect(page.locator(".status")).to_have_text("x=mpg y=hp points=200")
    page.locator(".x-select select").select_option("weight")
    expect(page.locator(".status")).to_have_text("x=weight y=hp points=200")
    # the figure in the layout is the new one Python made
    page.wait_for_function("() => Bokeh.documents[0].roots()[0].children[1].below[0].axis_label === 'weight'")
    page.locator(".y-select select").select_option("mpg")
    expect(page.locator(".status")).to_have_text("x=weight y=mpg points=200")
    console.assert_clean()


def test_export_csv_filters_in_python_and_exports_in_the_browser(page, console, server):
    open_app(page, server, "export_csv")
    expect(page.locator(".count")).to_have_text("rows=41")
    page.locator(".salary .noUi-handle-upper").press("ArrowRight")  # 50,000 -> 51,000: Python refilters
    expect(page.locator(".count")).to_have_text("rows=42")
    page.locator(".download button").click()  # CustomJS reads the table's source as Python left it
    expect(page.locator(".exported")).to_have_text("csv rows=42")
    console.assert_clean()


def test_gapminder_play_adds_and_pause_removes_a_periodic_callback(page, console, server):
    year_value = "() => Bokeh.documents[0].get_model_by_name('year').value"
    open_app(page, server, "gapminder")
    expect(page.locator(".year")).to_have_text("year=1964")
    page.locator(".play button").click()
    page.wait_for_function(f"() => ({year_value})() >= 1967", timeout=10_000)  # 200 ms steps, from Python
    page.locator(".play button").click()
    expect(page.locator(".play button")).to_have_text("► Play")  # Python took the pause branch
    year = page.evaluate(year_value)
    page.wait_for_timeout(1000)  # five steps' worth of time: none may come after the pause
    assert page.evaluate(year_value) == year
    console.assert_clean()


def test_selection_histogram_computes_the_selection_in_python(page, console, server):
    open_app(page, server, "selection_histogram")
    expect(page.locator(".status")).to_have_text("selected=0")
    page.evaluate("() => { Bokeh.documents[0].get_model_by_name('points').selected.indices = [0, 1, 2, 3] }")
    expect(page.locator(".status")).to_contain_text("selected=4 ")
    page.evaluate("() => { Bokeh.documents[0].get_model_by_name('points').selected.indices = [] }")
    expect(page.locator(".status")).to_have_text("selected=0 in_first_bin=0")
    console.assert_clean()
