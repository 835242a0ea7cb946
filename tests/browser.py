"""Open a saved plan map in headless Chromium (DevTools protocol over a pipe) and report what rendered.

Used by the browser tests and by ``benchmarks/map_scale.py`` (which puts this folder on ``sys.path``); not
part of the package: a planner never needs it.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from gis_planner.io import atomic_path

__all__ = ["CHECK_JS", "browser_check", "find_chromium"]


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


#: what the check reports of the page: layer control, legend sections and features drawn, controls
CHECK_JS = r"""
(function(){
  var out = {ready: !!window.GP_READY, overlays: [], legend: [], errors: []};
  var map = window.GP && GP.map;
  if (!map) return JSON.stringify(out);
  var ctl = document.querySelector('.leaflet-control-layers');
  out.layerControl = !!ctl;
  var inputs = ctl ? ctl.querySelectorAll('.leaflet-control-layers-overlays label') : [];
  var secs = document.querySelectorAll('.gp-legend .gp-sec');
  GP.cfg.legend.forEach(function(s){ if (!map.hasLayer(s.layer)) map.addLayer(s.layer); });
  var names = [];
  inputs.forEach(function(l){ names.push(l.textContent.trim()); });
  var i = 0;
  map.eachLayer(function(){ i++; });
  GP.cfg.legend.forEach(function(s){
    out.legend.push({title: s.el.querySelector('b') ? s.el.querySelector('b').textContent : '',
                     items: s.el.querySelectorAll('.gp-item').length, shown: s.el.style.display !== 'none',
                     features: GP.count(s.layer)});
  });
  out.overlays = names;
  out.mapLayers = i;
  out.canvas = document.querySelectorAll('.leaflet-overlay-pane canvas').length;
  out.markers = document.querySelectorAll('.leaflet-marker-pane .leaflet-marker-icon').length;
  out.legendSections = secs.length;
  out.controls = {scale: !!document.querySelector('.leaflet-control-scale'),
                  fullscreen: !!document.querySelector('.gp-fullscreen'), measure: !!document.querySelector('.gp-measure'),
                  north: !!document.querySelector('.gp-north'), title: (document.querySelector('.gp-title')||{}).textContent || ''};
  return JSON.stringify(out);
})()
"""


def browser_check(path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None, offline: bool = True,
                  chromium: str | None = None, timeout: float = 60.0, width: int = 1400, height: int = 900,
                  script: str | None = None) -> dict[str, Any]:
    """Open a saved map in headless Chromium (DevTools protocol over a pipe) and report what rendered.

    Parameters
    ----------
    path : the HTML file.
    screenshot : write a PNG screenshot here.
    offline : emulate a machine with no network (every request fails).
    chromium : the browser executable (default: ``chromium`` / ``google-chrome`` on PATH).
    timeout : seconds to wait for the page.
    script : extra JavaScript evaluated after the checks; its (JSON-serialisable) value is returned as
        ``"script"``.

    Returns
    -------
    ``{"load_s", "render_s", "console_errors", "dialogs", "requests", "check": {...}}`` — ``check`` lists
    the layer-control overlays, every legend section with its item count and the number of features drawn,
    and the controls found. ``render_s`` is the time from navigation to the first render of the map.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (install the 'chromium' package)")
    url = Path(path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="gp-chromium-") as profile:
        r_cmd, w_cmd = os.pipe()
        r_out, w_out = os.pipe()

        def child_fds() -> None:
            # our pipe ends become fds 3 (commands in) and 4 (replies out); every other descriptor is
            # close-on-exec (Python's default), so nothing else leaks into the browser
            a, b = os.dup(r_cmd), os.dup(w_out)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=child_fds, close_fds=False)  # noqa: PLW1509 - fds 3/4 must survive
        os.close(r_cmd)
        os.close(w_out)
        buf = b""
        counter = 0
        events: list[dict[str, Any]] = []

        def send(method: str, params: dict | None = None, session: str | None = None) -> int:
            nonlocal counter
            counter += 1
            msg: dict[str, Any] = {"id": counter, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            os.write(w_cmd, json.dumps(msg).encode() + b"\0")
            return counter

        def pump(deadline: float) -> None:
            nonlocal buf
            wait = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([r_out], [], [], wait)
            if ready:
                chunk = os.read(r_out, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium exited")
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    events.append(json.loads(raw))

        def call(method: str, params: dict | None = None, session: str | None = None) -> dict[str, Any]:
            mid = send(method, params, session)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for k, ev in enumerate(events):
                    if ev.get("id") == mid:
                        events.pop(k)
                        if "error" in ev:
                            raise RuntimeError(f"{method}: {ev['error']}")
                        return ev.get("result", {})
                pump(deadline)
            raise TimeoutError(method)

        console: list[str] = []
        dialogs: list[str] = []
        requests: list[str] = []
        seen: list[dict[str, Any]] = []

        def drain(session: str) -> None:
            keep = []
            for ev in events:
                if "id" in ev:
                    keep.append(ev)
                    continue
                seen.append(ev)
                meth, p = ev.get("method"), ev.get("params", {})
                if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
                elif meth == "Runtime.exceptionThrown":
                    d = p.get("exceptionDetails", {})
                    console.append(str(d.get("exception", {}).get("description") or d.get("text")))
                elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    console.append(str(p["entry"].get("text")) + " " + str(p["entry"].get("url", "")))
                elif meth == "Page.javascriptDialogOpening":
                    dialogs.append(str(p.get("message")))
                    send("Page.handleJavaScriptDialog", {"accept": True}, session)
                elif meth == "Network.requestWillBeSent":
                    u = p.get("request", {}).get("url", "")
                    if not u.startswith(("data:", "file:", "about:")):
                        requests.append(u)
            events[:] = keep

        try:
            target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                call(f"{domain}.enable", {}, session)
            if offline:
                call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                          "uploadThroughput": -1}, session)
            call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                        "mobile": False}, session)
            t0 = time.monotonic()
            call("Page.navigate", {"url": url}, session)
            load_s = render_s = None
            deadline = t0 + timeout
            while time.monotonic() < deadline:
                drain(session)
                if load_s is None and any(e.get("method") == "Page.loadEventFired" for e in seen):
                    load_s = time.monotonic() - t0
                if load_s is not None:
                    r = call("Runtime.evaluate", {"expression": "!!window.GP_READY && new Promise(function(res){"
                                                  "requestAnimationFrame(function(){requestAnimationFrame("
                                                  "function(){res(true)})})})", "awaitPromise": True,
                                                  "returnByValue": True}, session)
                    if r.get("result", {}).get("value"):
                        render_s = time.monotonic() - t0
                        break
                pump(min(deadline, time.monotonic() + 0.05))
            if screenshot is not None:  # the map as it opens, before the checks switch every layer on
                png = call("Page.captureScreenshot", {"format": "png"}, session)["data"]
                with atomic_path(screenshot) as tmp:
                    tmp.write_bytes(base64.b64decode(png))
            check = json.loads(call("Runtime.evaluate", {"expression": CHECK_JS, "returnByValue": True},
                                    session)["result"].get("value") or "{}")
            extra = None
            if script:
                extra = call("Runtime.evaluate", {"expression": script, "returnByValue": True, "awaitPromise": True},
                             session)["result"].get("value")
            settle = time.monotonic() + 0.3
            while time.monotonic() < settle:
                pump(settle)
            drain(session)
            try:
                send("Browser.close")
            except OSError:
                pass
        finally:
            os.close(w_cmd)
            os.close(r_out)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {"load_s": load_s, "render_s": render_s, "console_errors": console, "dialogs": dialogs,
            "requests": requests, "check": check, "script": extra}
