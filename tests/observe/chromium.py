"""A real headless Chromium (Debian's ``chromium``, installed by ``make install``) driven over its DevTools
protocol: load a page, collect what its console said and what it fetched, and take a full-page
screenshot with the page's images and where they are."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tfx_canary.process import stop

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--remote-debugging-port=0", "--remote-allow-origins=*",
)  # fmt: skip
# what the page reads by itself: the report must need nothing beyond its own file
IMAGES_JS = """JSON.stringify([...document.images].map(i => {
  const r = i.getBoundingClientRect();
  return {complete: i.complete, width: i.naturalWidth, height: i.naturalHeight, src: i.src.slice(0, 22),
          x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height, alt: i.alt};
}))"""


@dataclass
class Loaded:
    console: list[str] = field(default_factory=list)  # errors and warnings, exceptions, failed loads
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    images: list[dict] = field(default_factory=list)
    title: str = ""
    screenshot: bytes = b""


def binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        raise AssertionError("chromium is not installed: run `make install` (tools/system_packages.py)")
    return found


class _Session:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket, self.ids, self.events = socket, 0, []

    async def call(self, method: str, **params) -> dict:
        self.ids += 1
        mine = self.ids
        await self.socket.send_json({"id": mine, "method": method, "params": params})
        while True:
            message = json.loads((await self.socket.receive(timeout=30)).data)
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    async def wait_for(self, method: str, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            message = json.loads((await self.socket.receive(timeout=deadline - time.monotonic())).data)
            self.events.append(message)


async def _load(port: int, url: str, width: int) -> Loaded:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            page = next(t for t in await response.json() if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            session = _Session(socket)
            for domain in ("Runtime", "Log", "Network", "Page"):
                await session.call(f"{domain}.enable")
            await session.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            await session.call("Page.navigate", url=url)
            await session.wait_for("Page.loadEventFired")
            await asyncio.sleep(0.3)  # late console messages
            result = Loaded()
            evaluated = await session.call("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)
            result.images = json.loads(evaluated["result"]["value"])
            title = await session.call("Runtime.evaluate", expression="document.title", returnByValue=True)
            result.title = title["result"]["value"]
            metrics = await session.call("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            shot = await session.call(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
            result.screenshot = base64.b64decode(shot["data"])
            for event in session.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
                    result.console.append(
                        " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                    )
                elif method == "Runtime.exceptionThrown":
                    result.console.append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                    result.console.append(params["entry"]["text"])
                elif method == "Network.requestWillBeSent":
                    result.requests.append(params["request"]["url"])
                elif method == "Network.loadingFailed":
                    result.console.append(f"failed to load: {params.get('errorText')}")
            return result


def load(path: Path, width: int = 1280, timeout_s: float = 60.0) -> Loaded:
    """Open ``path`` in a fresh headless Chromium (its own profile) and report what happened."""
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        process = subprocess.Popen(
            [binary(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helpers (zygote, renderer, crashpad) in one group, stopped below
        )
        try:
            active = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not (active.exists() and active.read_text().strip()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"chromium did not start (exit code {process.poll()})")
                time.sleep(0.1)
            port = int(active.read_text().split()[0])
            return asyncio.run(asyncio.wait_for(_load(port, path.resolve().as_uri(), width), timeout_s))
        finally:
            stop(process, timeout_s=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # helpers that outlive the browser
    finally:
        _remove(profile)


def _remove(profile: str, timeout_s: float = 10.0) -> None:
    """Delete the profile; a helper still exiting can write into it a moment longer (measured under
    load: "Directory not empty: 'Default'"), so try again until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            shutil.rmtree(profile)
            return
        except OSError:
            if not os.path.exists(profile):
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
