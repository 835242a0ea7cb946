"""The plan map in headless Chromium with the network off: map, legend, every layer, no console errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser import browser_check, find_chromium

from gis_planner import maps

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(find_chromium() is None,
                                reason="Chromium not installed (Debian package 'chromium'; installed by .ci/run)")

# Open the popup and the tooltip of the compound whose name is markup, report what the page shows.
_POPUP_JS = r"""
(function(){
  var lay = GP.cfg.legend[0].layer, ds = lay.gpData, out = {};
  lay.eachLayer(function(geo){ geo.eachLayer(function(l){
    var i = l.feature.properties.i;
    if (ds.t[i].indexOf('onerror') >= 0){
      var c = l.getBounds().getCenter();
      geo.fire('click', {layer: l, latlng: c}); geo.fire('mouseover', {layer: l, latlng: c});
    } }); });
  var pop = document.querySelector('.leaflet-popup-content'), tip = document.querySelector('.leaflet-tooltip:not(.gp-line-label)');
  out.popupText = pop ? pop.textContent : null;
  out.popupImgs = pop ? pop.querySelectorAll('img').length : -1;
  out.tooltipText = tip ? tip.textContent : null;
  out.imgsAnywhere = document.querySelectorAll('img[src="x"]').length;
  return JSON.stringify(out);
})()
"""


@pytest.fixture(scope="module")
def opened(hostile_run, tmp_path_factory):
    result = hostile_run[1]
    out = tmp_path_factory.mktemp("browser")
    path, _ = maps.save_map(maps.plan_map(result, basemap=None), out / "map.html")
    report = browser_check(path, screenshot=out / "map.png", script=_POPUP_JS, timeout=90)
    return out, report


def test_no_console_errors_no_network(opened):
    _, r = opened
    assert r["console_errors"] == []
    assert r["requests"] == []  # everything is inline: no CDN, no tiles
    assert r["dialogs"] == []   # the markup name never ran as HTML
    assert r["render_s"] is not None


def test_map_legend_and_every_layer_rendered(opened):
    _, r = opened
    c = r["check"]
    assert c["ready"] and c["layerControl"] and c["canvas"] >= 1
    assert len(c["overlays"]) >= 10
    assert all(c["controls"][k] for k in ("scale", "fullscreen", "measure", "north"))
    assert c["legendSections"] == len(c["legend"]) >= 10
    for sec in c["legend"]:
        assert sec["items"] >= 1, sec
        assert sec["features"] >= 1, sec  # switched on, the layer draws something
        assert sec["shown"], sec          # and its legend section shows


def test_markup_name_shown_as_text(opened, hostile_name):
    _, r = opened
    s = json.loads(r["script"])
    assert hostile_name in s["popupText"] and s["popupImgs"] == 0
    assert hostile_name in s["tooltipText"]
    assert s["imgsAnywhere"] == 0


def test_screenshot_not_blank(opened):
    from matplotlib import image

    out, _ = opened
    img = image.imread(out / "map.png")
    assert img.shape[0] >= 800 and img.shape[1] >= 1200
    flat = img[..., :3].reshape(-1, 3)
    assert flat.std() > 0.05
    assert len(np.unique((flat * 255).astype(np.uint8), axis=0)) > 50
