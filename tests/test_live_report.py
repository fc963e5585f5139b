"""The live report (issue "Watch it work", items 3 and 4): report.html rewritten at every stage
while the run goes on, reloading itself in the browser only while the run is active; `rdft
report --serve` on 127.0.0.1; the batch table's link to each task's report.

The run is real: the demo stopped right after loop 0's running stage (--step-n 5), then resumed
with its feedback stage held in its LLM call (a test server that does not answer), so the report
is read while a session is working on it; then that session is killed with -9."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import log_dir_of, one_line_error, skip_without
from llm_server import LLMServer, Status


class Chromium:
    """Debian's chromium, headless, driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: JSON messages ending in NUL on fds 3 and 4, no port, no network)."""

    def __init__(self, profile: Path):
        binary = shutil.which("chromium")
        if binary is None:
            skip_without("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()

        def pipes_as_3_and_4():  # above 4 first: a pipe's own number may be 3 or 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=pipes_as_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next, self.events = b"", 0, []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: bool = False, timeout: float = 60) -> dict:
        self._next += 1
        request = {"id": self._next, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = self.session
        os.write(self._out, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def open(self, url: str, before: str | None = None) -> None:
        """Load `url` in the tab (`before`: a script that runs before the page's own) until its
        load event, when its images are decoded."""
        if before:
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": before}, session=True)
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message(deadline))

    def value(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        return result["result"].get("value")

    def errors(self) -> list[dict]:
        """What the page logged as an error: console.error, uncaught exceptions, failed loads."""
        return [
            e
            for e in self.events
            if e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


LOSS_DRAWN = "(() => { const i = document.getElementById('loss-0'); return i && i.complete ? i.naturalWidth : -1 })()"
RELOADING = "document.getElementById('live-note') && document.getElementById('live-note').dataset.reloading"


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {out[-2000:]}{err[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def live_record(log: Path) -> dict:
    try:
        return json.loads((log / "live.json").read_text())
    except (OSError, ValueError):
        return {}


def served(rdft, *args: str, env: dict) -> tuple[subprocess.Popen, str]:
    """`rdft report ... --serve` started in the background, and the URL it printed."""
    proc = rdft.popen("report", *args, "--serve", env=env)
    line = proc.stdout.readline()
    found = re.search(r"at (http://\S+/report\.html)", line)
    if not found:
        proc.kill()
        raise AssertionError(line + proc.communicate()[1])
    return proc, found.group(1)


def stop_serving(proc: subprocess.Popen, how: signal.Signals = signal.SIGINT) -> None:
    """Ctrl-C (SIGINT, which rdft.popen's background start ignores unless the command handles
    it) or a service manager's SIGTERM: either ends the server cleanly."""
    proc.send_signal(how)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped serving" in out and "Traceback" not in err, (out, err)


def test_a_report_written_mid_run_is_live(rdft, shared_dirs, data_env, eval_env, train_env, tmp_path):
    env = {**shared_dirs, "FT_UPPER_DATA_SIZE_LIMIT": "256"}  # a shorter training: the report is tested
    stopped = rdft("run", "--demo", "--step-n", "5", env=env)  # items, base model, proposal, coding, running
    assert stopped.returncode == 3, stopped.output[-3000:]
    log = log_dir_of(stopped.stdout)
    page = (log / "report.html").read_text()
    # Stopped: it says why and how to resume, and does not reload itself.
    assert "id='live' class='stopped'" in page and "ran 5 step(s) (--step-n)" in page, page[:3000]
    assert f"rdft run --resume {log}" in page and "location.reload" not in page
    assert "id='loss-0'" in page  # loop 0's loss curve, drawn from its metrics.jsonl
    stages = re.findall(r"<rect class='stage' data-stage='(\w+)'", page)
    assert stages == ["direct_exp_gen", "coding", "running"]  # the timeline: loop 0 so far
    assert live_record(log)["after"] == "running" and live_record(log)["ended"] is not None

    # Resumed: the feedback stage waits on its LLM call, which the test server holds.
    release = threading.Event()

    def hold(body: dict):
        release.wait(300)
        return Status(503)

    with LLMServer(hold) as server:
        llm = {"OPENAI_API_BASE": server.base_url, "OPENAI_API_KEY": "sk-live-report-test", "RDFT_LLM_TIMEOUT": "600"}
        run = rdft.popen("run", "--resume", str(log), env={**env, **llm})
        try:
            wait_for(lambda: server.requests, "the feedback stage's LLM call", run)
            record = live_record(log)
            assert (record["pid"], record["loop"], record["stage"], record["ended"]) == (run.pid, 0, "feedback", None)
            page = (log / "report.html").read_text()
            assert "id='live' class='active' data-stage='feedback' data-loop='0'" in page, page[:3000]
            assert re.search(r"loop 0 of 2 · feedback for \d+ s \(since [^)]+\); no --timeout budget \(", page)
            assert "location.reload" in page and "id='loss-0'" in page
            under_way = re.findall(r"data-stage='(\w+)'[^>]+fill='url\(#under-way\)'", page)
            assert under_way == ["feedback"]  # the timeline's bar of the stage under way

            # In a browser: no error logged, the loss chart decoded, the page set to reload.
            browser = Chromium(tmp_path / "chrome")
            try:
                browser.open((log / "report.html").as_uri())
                assert browser.errors() == []
                assert browser.value(LOSS_DRAWN) > 100
                assert browser.value(RELOADING) == "yes"
                # The same page seen 6 minutes later, unchanged (its run killed): it stops reloading.
                later = "Date.now = ((now) => () => now() + 360000)(Date.now.bind(Date));"
                browser.open((log / "report.html").as_uri(), before=later)
                assert browser.value(RELOADING) == "no" and browser.errors() == []
                assert "stopped reloading" in browser.value("document.getElementById('live').textContent")
            finally:
                browser.close()

            # Another process sees the session's lock: its report is live too.
            other = rdft("report", str(log), "--output", str(tmp_path / "other.html"), env=env)
            assert other.returncode == 0, other.output
            assert "class='active' data-stage='feedback'" in (tmp_path / "other.html").read_text()

            # --serve answers on 127.0.0.1 while the run goes on.
            server_proc, url = served(rdft, str(log), "--port", "0", env=env)
            try:
                assert url.startswith("http://127.0.0.1:")
                with urllib.request.urlopen(url, timeout=30) as answer:
                    body = answer.read().decode()
                assert answer.status == 200 and "class='active' data-stage='feedback'" in body
            finally:
                stop_serving(server_proc)
        finally:
            run.kill()  # -9: no chance to record that it ended
            run.communicate()
            release.set()

    record = live_record(log)
    assert record["ended"] is None and record["stage"] == "feedback"  # what the killed session left
    assert "location.reload" in (log / "report.html").read_text()  # its last page, until rewritten
    rewritten = rdft("report", str(log), env=env)
    assert rewritten.returncode == 0, rewritten.output
    page = (log / "report.html").read_text()
    assert "id='live' class='gone'" in page and f"process {run.pid}" in page and "killed?" in page
    assert "location.reload" not in page


def outside_address() -> str | None:
    """This host's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_serve_binds_loopback_unless_asked(rdft, tmp_path):
    log = tmp_path / "run"
    log.mkdir()
    (log / "run.json").write_text(json.dumps({"base_model": "tiny:llama", "benchmark": "demo_letter"}))
    refused = one_line_error(rdft("report", str(log), "--serve", "--bind", "0.0.0.0"))
    assert "--bind 0.0.0.0 would serve the whole run folder" in refused and "--allow-remote" in refused
    assert "not an IP address" in one_line_error(rdft("report", str(log), "--serve", "--bind", "example.org"))
    assert "--port goes with --serve" in one_line_error(rdft("report", str(log), "--port", "8000"))
    assert not (log / "report.html").exists()  # refused before anything was written

    outside = outside_address()
    proc, url = served(rdft, str(log), "--port", "0", env={})
    try:
        port = int(url.split(":")[2].split("/")[0])
        if outside:  # on loopback only: this host's other address is refused
            with socket.socket() as probe:
                probe.settimeout(5)
                assert probe.connect_ex((outside, port)) != 0
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.status == 200 and "rdft: tiny:llama on demo_letter" in answer.read().decode()
        with urllib.request.urlopen(url.rsplit("/", 1)[0] + "/", timeout=30) as answer:
            assert answer.url == url  # the folder's root leads to the report
        with pytest.raises(urllib.error.HTTPError, match="501"):  # read-only: GET and HEAD alone
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="PUT"), timeout=30)
        busy = one_line_error(rdft("report", str(log), "--serve", "--port", str(port)))
        assert f"port {port} is in use" in busy
    finally:
        stop_serving(proc)

    # Asked for: every IPv4 address, this host's other one included.
    proc, url = served(rdft, str(log), "--port", "0", "--bind", "0.0.0.0", "--allow-remote", env={})
    try:
        port = url.split(":")[2].split("/")[0]
        for address in ("127.0.0.1", *([outside] if outside else [])):
            with urllib.request.urlopen(f"http://{address}:{port}/report.html", timeout=30) as answer:
                assert answer.status == 200
    finally:
        stop_serving(proc, signal.SIGTERM)


def test_the_batch_table_links_each_tasks_report(rdft, shared_dirs, data_env, eval_env, train_env, tmp_path):
    """Each task's report: its path in the plan, a link in the live table once written, and in
    the closing lines. The task stops at a 1-second budget (its report is written at the stop)."""
    tasks = tmp_path / "tasks.json"
    task = {"model": "tiny:llama", "benchmark": "demo_letter", "datasets": "demo-letter", "gpus": "", "loop_n": 1}
    tasks.write_text(json.dumps({"tasks": [{**task, "timeout": "1s"}]}))
    plan = rdft("batch", str(tasks), "--dry-run", env=shared_dirs)
    assert plan.returncode == 0, plan.output
    assert re.search(r"^  report: \S+/batch-[^/]+/1-tiny-llama-demo_letter/report\.html \(live", plan.stdout, re.M)

    result = rdft("batch", str(tasks), "--no-sync", env={**shared_dirs, "COLUMNS": "250"}, timeout=600)
    assert result.returncode == 3, result.output[-3000:]  # stopped at its timeout: resumable
    (log,) = (p for p in (rdft.workdir / "log").glob("batch-*/*") if p.is_dir())
    page = (log / "report.html").read_text()
    assert "class='stopped'" in page and "the --timeout budget (1 s) is spent" in page and " of 1 s. " in page
    table = result.stdout.split("task 1: stopped")[0]
    assert re.search(r"│ 1-tiny-llama-demo_letter/report\.html\s*│", table), table
    assert f"report {log / 'report.html'}" in result.stdout

    from rich.console import Console

    from rdft.batch.tasks import report_link

    shown = Console(force_terminal=True, width=200, color_system="truecolor")
    with shown.capture() as captured:
        shown.print(report_link(log))
    assert "\x1b]8;id=" in captured.get() and (log / "report.html").resolve().as_uri() in captured.get()  # OSC 8
    assert report_link(tmp_path / "not-started") == "-"


def test_a_report_that_cannot_be_written_never_stops_the_run(tmp_path):
    """The run marks its stages whatever the report's fate: a run.json the report cannot read
    (say, cut by a full disk) is said once, and the stages go on."""
    from rich.console import Console

    from rdft.loop.report import LiveReport

    log = tmp_path / "run"
    log.mkdir()
    (log / "run.json").write_text("{cut")
    console = Console(record=True, width=300)
    live = LiveReport(log, console)
    live.stage(0, "coding", time.time())
    live.stage_done(0, "coding")
    assert json.loads((log / "live.json").read_text())["after"] == "coding"
    said = console.export_text()
    assert said.count("rdft: warning: the live report was not written (RdftError:") == 1, said
    assert not (log / "report.html").exists()
