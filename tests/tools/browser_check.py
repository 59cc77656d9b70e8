"""Check in headless Chromium that a study reads right in `dhkd ui`, and keep screenshots.

    python tests/tools/browser_check.py --out /tmp/dhkd-browser
    python tests/tools/browser_check.py --out DIR --tracking-uri sqlite:///runs/mlflow.db --study qs

Without --study it runs the quickstart smoke study and `dhkd report` on it in a temporary
folder first. Then it starts `dhkd ui --study NAME`, opens the URL that command prints, the
study run, a trial run (a PRUNED one when there is one) and the HTML report (inside MLflow's
artifact viewer and on its own), and fails when the page lands on MLflow's GenAI overview, when
a trial is missing from the runs table, when the study run's description does not link the
best trial, or when the report shows a broken image or a link that leads nowhere. Screenshots:
OUT/1-runs.png, 2-study-run.png, 3-trial-run.png, 4-report-in-mlflow.png, 5-report.png.

It drives Debian's `chromium` over the DevTools protocol (aiohttp, which MLflow already needs,
is the websocket client). Exit status 0: passed; 1: a check failed; 2: it could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from dhkd.errors import DhkdError
from dhkd.runs.tracking import DEFAULT_TRACKING_URI
from dhkd.study.tracking.presentation import run_route

REPO = Path(__file__).resolve().parents[2]  # tests/tools/ -> the repository
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WAIT_S = 90.0  # per page: the UI renders in a few seconds, but CI machines are shared


class CheckFailed(Exception):
    """What a person would have seen go wrong."""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dhkd(*args: str, timeout: float) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cmd = [sys.executable, "-m", "dhkd", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise DhkdError(f"`dhkd {' '.join(args)}` failed:\n{(done.stdout + done.stderr)[-3000:]}")


def smoke_study(work: Path) -> tuple[str, str]:
    """The quickstart smoke study and its report in `work`; (tracking URI, study name)."""
    uri, name = f"sqlite:///{work / 'mlflow.db'}", "browser-check"
    spec = str(REPO / "studies" / "quickstart.yaml")
    _dhkd("study", "run", spec, "--smoke-test", "--name", name, "--tracking-uri", uri,
          "--storage-path", str(work / "ray"), "--quiet", timeout=900)  # fmt: skip
    _dhkd("report", name, "--tracking-uri", uri, "--out", str(work / "report"),
          "--storage-path", str(work / "ray"), timeout=600)  # fmt: skip
    return uri, name


class UI:
    """`dhkd ui --study NAME` on a free port; `url` is the study's runs page it printed."""

    def __init__(self, uri: str, study: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "dhkd", "ui", "--tracking-uri", uri, "--port",
               str(self.port), "--study", study]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)  # fmt: skip
        self.url = ""
        for line in self.proc.stdout:
            if line.strip().startswith(f"study {study}: "):
                self.url = line.split(": ", 1)[1].strip()
                break
        if not self.url:
            self.close()
            raise DhkdError(f"`dhkd ui --study {study}` printed no URL for the study")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(1)
        self.close()
        raise DhkdError(f"`dhkd ui` did not answer at {self.base} within 180 s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it stops its server's process group
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


class Browser:
    """Headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, chromium: str, profile: Path) -> None:
        self.chromium, self.profile = chromium, profile
        self.proc: subprocess.Popen | None = None
        self.ws = self.session = None
        self.next_id = 0

    async def __aenter__(self) -> Browser:
        import aiohttp

        # In-process sandboxed frames, so the report's frame in MLflow's viewer can be read.
        self.proc = subprocess.Popen(
            [self.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-features=IsolateSandboxedIframes", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1700,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        endpoint = ""
        for line in self.proc.stderr:
            if "DevTools listening on" in line:
                endpoint = line.split(" on ", 1)[1].strip()
                break
        if not endpoint:
            raise DhkdError(f"{self.chromium} did not start (no DevTools endpoint)")
        port = endpoint.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as r:
            pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    async def call(self, method: str, **params) -> dict[str, Any]:
        self.next_id += 1
        mine = self.next_id
        await self.ws.send_json({"id": mine, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == mine:
                if "error" in msg:
                    raise DhkdError(f"{method}: {msg['error']}")
                return msg["result"]

    async def eval(self, expression: str, context: int | None = None) -> Any:
        extra = {"contextId": context} if context is not None else {}
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True, **extra)  # fmt: skip
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {}).get("description", details.get("text"))
            raise DhkdError(f"script {expression[:80]!r} failed: {thrown}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url="about:blank")  # a hash route loads afresh
        await self.call("Page.navigate", url=url)

    async def wait_for(self, condition: str, what: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.eval(
                f"(() => {{ try {{ return Boolean({condition}); }} "
                "catch (e) { return false; } })()"
            ):
                return
            await asyncio.sleep(0.5)
        text = await self.eval("document.body ? document.body.innerText.slice(0, 600) : ''")
        raise CheckFailed(f"{what} (waited {timeout:.0f} s); the page shows: {text!r}")

    async def reveal(self, text: str) -> None:
        """Scroll the innermost element showing `text` into the middle of the view."""
        await self.eval(f"""(() => {{
          const all = [...document.querySelectorAll('body *')].filter(
            e => e.children.length === 0 && e.textContent.includes({json.dumps(text)}));
          if (all.length) all[0].scrollIntoView({{block: 'center'}});
        }})()""")
        await asyncio.sleep(0.5)

    async def text(self) -> str:
        return await self.eval("document.body.innerText")

    async def shot(self, path: Path, full: bool = False) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full:
            metrics = await self.call("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000),
                "scale": 1})  # fmt: skip
        data = (await self.call("Page.captureScreenshot", **params))["data"]
        path.write_bytes(base64.b64decode(data))


def study_runs(uri: str, name: str, work: Path) -> dict[str, Any]:
    """Ids and names the pages must show (experiment, study run, trials, best trial) and the
    report's README.html, downloaded from the study run into `work`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise DhkdError(f"no study named '{name}' at {uri}")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    study = [r for r in runs if r.data.tags.get("dhkd.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("dhkd.role") == "trial"]
    if not study or not trials:
        raise DhkdError(f"study '{name}' has no study run or no trial runs at {uri}")
    done = [t for t in trials if t.data.tags.get("state") == "COMPLETE"]
    key = next((k for k in (done[0].data.metrics if done else {}) if k.startswith("objective")),
               None)  # fmt: skip
    best = max(done, key=lambda t: t.data.metrics.get(key, float("-inf"))) if done else None
    names = {a.path for a in client.list_artifacts(study[0].info.run_id, "report")}
    if "report/README.html" not in names:
        raise DhkdError(f"study '{name}' has no report/README.html: run `dhkd report {name}`")
    report = client.download_artifacts(study[0].info.run_id, "report/README.html", str(work))
    return {"experiment_id": exp.experiment_id, "study": study[0], "trials": trials,
            "best": best, "report": report}  # fmt: skip


REPORT_PROBLEMS = """(() => {
  const problems = [];
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) problems.push('broken image ' + img.alt);
  }
  for (const a of document.querySelectorAll('a[href]')) {
    const href = a.getAttribute('href');
    if (href.startsWith('#')) {
      if (!document.getElementById(decodeURIComponent(href.slice(1))))
        problems.push('link to a missing anchor ' + href);
    } else if (!/^https?:/.test(href)) {
      problems.push('link that cannot resolve here ' + href);
    }
  }
  return JSON.stringify({problems, images: document.images.length,
                         links: document.querySelectorAll('a[href]').length});
})()"""


async def _check_report_frame(browser: Browser) -> dict[str, Any] | None:
    """The report's checks run inside the artifact viewer's frame (None: no frame found)."""
    tree = (await browser.call("Page.getFrameTree"))["frameTree"]
    frames = [c["frame"] for c in tree.get("childFrames", [])]
    frames = [f for f in frames if f.get("url", "").startswith("blob:")]
    if not frames:
        return None
    world = await browser.call("Page.createIsolatedWorld", frameId=frames[0]["id"],
                               grantUniveralAccess=True)  # fmt: skip
    context = world["executionContextId"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if await browser.eval("document.readyState === 'complete'", context):
            break
        await asyncio.sleep(0.5)
    return json.loads(await browser.eval(REPORT_PROBLEMS, context))


async def run_checks(browser: Browser, ui: UI, info: dict[str, Any], out: Path) -> list[str]:
    """Load the pages, check them, write the screenshots; returns what was seen."""
    seen = []
    exp, study = info["experiment_id"], info["study"]
    trial_names = sorted(t.info.run_name for t in info["trials"])

    await browser.goto(ui.url)
    await browser.wait_for("document.querySelector('[role=grid], table, .ag-root')",
                           "the runs table did not appear")  # fmt: skip
    href = await browser.eval("location.href")
    text = await browser.text()
    if "/overview" in href or "Observability" in text:
        await browser.shot(out / "1-runs.png")
        raise CheckFailed(f"{ui.url} landed on the GenAI overview ({href})")
    names = " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in trial_names)
    await browser.wait_for(f"document.body.innerText.includes({json.dumps(study.info.run_name)})"
                           f" && {names}", f"the runs table lacks the study run or a trial "
                           f"({study.info.run_name}, {', '.join(trial_names)})")  # fmt: skip
    await browser.shot(out / "1-runs.png")
    pruned = [t for t in info["trials"] if t.data.tags.get("state") == "PRUNED"]
    text = await browser.text()
    if pruned and "PRUNED" not in text:
        raise CheckFailed("a PRUNED trial's state is not shown in the runs table")
    seen.append(f"runs page {href}: study run and {len(trial_names)} trials "
                f"({len(pruned)} PRUNED)")  # fmt: skip

    base = f"{ui.base}/"
    await browser.goto(base + run_route(exp, study.info.run_id))
    await browser.wait_for(
        "document.body.innerText.includes('Best trial')",
        "the study run's description does not name the best trial",
    )
    best = info["best"]
    if best is not None:
        await browser.wait_for(
            f"document.querySelector('a[href*=\"{best.info.run_id}\"]')",
            "the study run's description does not link the best trial",
        )
    await browser.eval("""[...document.querySelectorAll('body *')].filter(
        e => e.children.length === 0 && e.textContent.trim() === 'Show more').forEach(e => {
          (e.closest('button, a, [role=button]') || e).click(); })""")
    await browser.reveal("Description")
    await browser.shot(out / "2-study-run.png")
    seen.append(f"study run {study.info.run_id}: description names the best trial")

    trial = pruned[0] if pruned else (best or info["trials"][0])
    await browser.goto(base + run_route(exp, trial.info.run_id))
    state = trial.data.tags.get("state", "")
    await browser.wait_for(f"document.body.innerText.includes('Trial #') && "
                           f"document.body.innerText.includes('{state}')",
                           f"the trial run's description does not say {state}")  # fmt: skip
    await browser.reveal(f"Trial #{trial.data.tags.get('optuna_trial_number')} of study")
    await browser.shot(out / "3-trial-run.png")
    seen.append(f"trial run {trial.info.run_name}: description says {state}")

    route = run_route(exp, study.info.run_id).replace("?", "/artifacts/report/README.html?")
    await browser.goto(base + route)
    await browser.wait_for(
        "document.querySelector('iframe.mlflow-html-iframe')",
        "MLflow's artifact viewer did not show report/README.html",
    )
    await asyncio.sleep(2.0)
    await browser.shot(out / "4-report-in-mlflow.png")
    inside = await _check_report_frame(browser)
    if inside is not None:
        if inside["problems"]:
            raise CheckFailed(f"the report in MLflow's viewer: {inside['problems'][:5]}")
        seen.append(f"report in MLflow's viewer: {inside['images']} images, "
                    f"{inside['links']} links, all fine")  # fmt: skip

    await browser.goto(Path(info["report"]).as_uri())  # the logged file, on its own
    await browser.wait_for(
        "document.readyState === 'complete' && document.images.length > 0",
        "the HTML report shows no figures",
    )
    alone = json.loads(await browser.eval(REPORT_PROBLEMS))
    await browser.shot(out / "5-report.png", full=True)
    if alone["problems"]:
        raise CheckFailed(f"the HTML report: {alone['problems'][:5]}")
    seen.append(f"HTML report: {alone['images']} images, {alone['links']} links, all fine")
    return seen


def check(out: Path, uri: str | None = None, study: str | None = None) -> list[str]:
    """Run the whole check; returns what was seen, raises CheckFailed or DhkdError."""
    chromium = find_chromium()
    if chromium is None:
        raise DhkdError("no Chromium found (looked for chromium, chromium-browser, "
                        "google-chrome); install Debian's: apt-get install chromium")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dhkd-browser-") as tmp:
        work = Path(tmp)
        if study is None:
            uri, study = smoke_study(work)
        elif uri is None:
            uri = DEFAULT_TRACKING_URI
        info = study_runs(uri, study, work)
        ui = UI(uri, study)
        try:

            async def drive() -> list[str]:
                async with Browser(chromium, work / "profile") as browser:
                    return await run_checks(browser, ui, info, out)

            return asyncio.run(drive())
        finally:
            ui.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tests/tools/browser_check.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", required=True, help="folder for the screenshots")
    p.add_argument("--tracking-uri", default=None, help="with --study: an existing store")
    p.add_argument("--study", default=None, help="check this study instead of a smoke study")
    args = p.parse_args(argv)
    out = Path(args.out)
    start = time.monotonic()
    try:
        seen = check(out, args.tracking_uri, args.study)
    except CheckFailed as exc:
        print(f"browser check FAILED: {exc}\nscreenshots: {out}", file=sys.stderr)
        return 1
    except DhkdError as exc:
        print(f"browser check could not run: {exc}", file=sys.stderr)
        return 2
    for line in seen:
        print(f"ok  {line}")
    print(f"browser check passed in {time.monotonic() - start:.0f} s; screenshots in {out}:")
    for path in sorted(out.glob("*.png")):
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
