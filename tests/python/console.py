#!/usr/bin/env python3
"""Drives Qilin's web console in headless Chromium with Selenium, as a user would.

Usage: console.py CONFIG.json

CONFIG (written by tests/tests/all/console.rs):
  url          the console, e.g. http://127.0.0.1:PORT/
  user, password
  out          directory for the screenshots (NN-page.png) and report.json
  project, model, cube
  ready        [start_ms, end_ms] of the one READY segment the cube starts with
  build        ["YYYY-MM-DD", "YYYY-MM-DD"]: the new range to build from the cube page
  sql          SSB Q2.1
  rows         how many rows the oracle returns for it
  row_filter   the row filter on customer the page gives user viewer
  region_sql   a query by region viewer runs (its rows go to report.json)
  chromium, chromedriver   executables

Steps: a wrong password is refused in the page; sign in; the project's tables and columns; the
model diagram; the cube with its READY segment; "Build a range" and the job page's progress up
to 100 % (never going backwards); the cube's second READY segment; Monitor; Insight runs the
query and shows the result rows, the cube and cuboid in the EXPLAIN, a bar and a line chart and
a CSV download; the history survives a reload; a SQL error is shown; System; Access (as the
global admin: add user `viewer`, grant it QUERY in the project, a row filter on customer, an
API key for viewer shown once); Audit (the wrong password, the new user and the grant, with outcomes);
sign-out; then as `viewer`: no Access or Audit links, the audit page refused (403), and a
query by region shows only the rows its filter lets through; sign-out. Every
wait is a WebDriverWait on the page's content (no fixed sleeps). A screenshot of every page
goes to OUT.

It writes OUT/report.json (the result rows as the page shows them, the progress values seen,
...) for the Rust test to compare with its oracle. Exit codes: 0 passed, 1 a check failed
(the message says which; OUT/failure.png and the browser's console log are kept), 3 Selenium
is missing.
"""

import calendar
import json
import os
import sys
import tempfile
import time
import traceback

try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError as e:  # pragma: no cover
    print(f"selenium is missing ({e}): pip install -r tests/requirements.txt", file=sys.stderr)
    sys.exit(3)

WAIT = 30  # seconds for a page to show its data
BUILD_WAIT = 300  # seconds for the build to finish


class CheckFailed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)


class Console:
    def __init__(self, cfg):
        self.cfg = cfg
        self.out = cfg["out"]
        self.shots = []
        self.report = {"screenshots": self.shots}
        self.profile = tempfile.TemporaryDirectory(prefix="qilin-console-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = cfg["chromium"]
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--window-size=1400,1000",
            f"--user-data-dir={self.profile.name}",
        ]:
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        opts.add_experimental_option(
            "prefs",
            {"download.default_directory": self.out, "download.prompt_for_download": False},
        )
        self.driver = webdriver.Chrome(service=Service(executable_path=cfg["chromedriver"]), options=opts)
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": self.out}
        )

    def close(self):
        try:
            self.driver.quit()
        finally:
            self.profile.cleanup()

    # -- helpers ---------------------------------------------------------------------------
    def wait(self, what, cond, timeout=WAIT):
        """Polls cond(driver) until truthy; fails with `what` and the page's errors."""
        try:
            return WebDriverWait(
                self.driver,
                timeout,
                poll_frequency=0.1,
                ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
            ).until(cond)
        except TimeoutException:
            raise CheckFailed(f"timed out after {timeout} s waiting for {what}; {self.page_state()}")

    def page_state(self):
        d = self.driver
        errors = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".error") if e.is_displayed() and e.text]
        page = d.find_element(By.ID, "page")
        return (
            f"at {d.current_url} page={page.get_attribute('data-page')} "
            f"ready={page.get_attribute('data-ready')} errors shown: {errors}"
        )

    def css(self, sel):
        return self.driver.find_elements(By.CSS_SELECTOR, sel)

    def one(self, sel):
        return self.driver.find_element(By.CSS_SELECTOR, sel)

    def page(self, name, timeout=WAIT):
        """Waits until the console shows page `name` with its data loaded."""

        def ready(d):
            p = d.find_element(By.ID, "page")
            state = p.get_attribute("data-ready")
            if p.get_attribute("data-page") == name and state == "error":
                raise CheckFailed(f"page {name} failed to load: {self.page_state()}")
            return p.get_attribute("data-page") == name and state == "1"

        self.wait(f"page {name}", ready, timeout)

    def shot(self, name):
        path = os.path.join(self.out, f"{len(self.shots) + 1:02d}-{name}.png")
        # The whole page, not only the window, when the page is taller (headless Chromium
        # caps the window at the screen size, so the viewport is emulated instead).
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": max(900, min(int(height), 8000)), "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            self.driver.save_screenshot(path)
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.shots.append(path)
        print(f"screenshot {path}")

    def nav(self, link_id, page):
        self.one(f"#{link_id}").click()
        self.page(page)

    # -- the scenario ----------------------------------------------------------------------
    def run(self):
        c = self.cfg
        d = self.driver
        d.get(c["url"])
        self.page("login")
        self.one("#login-user").send_keys(c["user"])
        self.one("#login-password").send_keys(c["password"] + "-wrong")
        self.one("#login-submit").click()
        err = self.wait("the wrong-password message", lambda d: d.find_element(By.ID, "login-error").is_displayed() and d.find_element(By.ID, "login-error"))
        check("wrong" in err.text.lower(), f"wrong password: unexpected message {err.text!r}")
        self.shot("sign-in-refused")
        pw = self.one("#login-password")
        pw.clear()
        pw.send_keys(c["password"])
        self.one("#login-submit").click()
        self.page("projects")
        check(self.one("#user-name").text == c["user"], f"user name shown: {self.one('#user-name').text!r}")
        self.shot("projects")

        # Project: tables with columns and types.
        self.one(f'a.project-link[data-project="{c["project"]}"]').click()
        self.page("project")
        tables = {e.get_attribute("data-table").lower(): e for e in self.css("#tables .table-card")}
        for t in ["lineorder", "dates", "customer", "supplier", "part"]:
            check(t in tables, f"table {t} not listed: {sorted(tables)}")
        cols = {
            r.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text.lower(): r.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text
            for r in tables["lineorder"].find_elements(By.CSS_SELECTOR, "tr.column-row")
        }
        check("lo_orderdate" in cols and "lo_revenue" in cols, f"lineorder columns: {cols}")
        check(all(cols.values()), f"a column without a type: {cols}")
        self.report["lineorder_columns"] = cols
        self.shot("project")

        # Model diagram: fact + 4 lookups, a labelled line per join.
        self.one(f'a.model-link[data-model="{c["model"]}"]').click()
        self.page("model")
        boxes = [g.get_attribute("data-table") for g in self.css("#model-diagram g.diagram-table")]
        check(len(boxes) == 5 and len(self.css("#model-diagram g.diagram-table.fact")) == 1, f"diagram boxes: {boxes}")
        labels = [t.text for t in self.css("#model-diagram text.join-label")]
        check(len(self.css("#model-diagram line.diagram-join")) == 4, "diagram: 4 join lines")
        check(any("lo_orderdate = d_datekey" in l for l in labels), f"join labels: {labels}")
        self.shot("model")

        # Cube: its one READY segment.
        d.get(c["url"].rstrip("/") + "/#/cubes/" + c["cube"])
        self.page("cube")
        segs = self.segments()
        check(
            segs == [("READY", c["ready"][0], c["ready"][1])],
            f"the cube should start with one READY segment {c['ready']}: {segs}",
        )
        check(self.one("#cube-status").get_attribute("data-status") == "READY", "cube status")
        check(int(self.one("#cube-cuboids").text.replace(",", "")) > 1, "cuboid count")
        check(len(self.css("#cube-dimensions tbody tr")) > 0 and len(self.css("#cube-measures tbody tr")) > 0, "dimensions and measures")
        check(len(self.css("#cube-aggs .agg-group")) > 0, "aggregation groups")
        self.shot("cube")

        # Build a new range and watch the job to 100 %.
        start, end = c["build"]
        for sel, value in [("#build-start", start), ("#build-end", end)]:
            box = self.one(sel)
            box.clear()
            box.send_keys(value)
        Select(self.one("#build-type")).select_by_value("BUILD")
        self.one("#build-submit").click()
        self.page("job")
        seen = []

        def finished(d):
            box = d.find_element(By.ID, "job-detail")
            status = box.get_attribute("data-status")
            p = float(d.find_element(By.ID, "job-progress").get_attribute("data-progress"))
            if not seen or seen[-1] != (status, p):
                seen.append((status, p))
            if status in ("ERROR", "DISCARDED", "STOPPED"):
                errs = [e.text for e in d.find_elements(By.ID, "job-error")]
                raise CheckFailed(f"the build ended {status}: {errs}")
            return status == "FINISHED" and p >= 100

        self.wait("the build job to finish at 100 %", finished, BUILD_WAIT)
        progress = [p for _, p in seen]
        self.report["progress_seen"] = progress
        print(f"progress seen: {seen}")
        check(progress == sorted(progress), f"progress went backwards: {progress}")
        steps = [r.get_attribute("data-status") for r in self.css("#job-steps tr.step-row")]
        check(steps and all(s == "FINISHED" for s in steps), f"job steps: {steps}")
        self.shot("build-job")

        self.one("#job-cube").click()
        self.page("cube")
        segs = self.segments()
        check(
            len(segs) == 2 and all(s[0] == "READY" for s in segs) and segs[1][2] == self.day_ms(end),
            f"after the build: two READY segments, the new one ending {end}: {segs}",
        )
        self.report["segments_after"] = segs
        self.shot("cube-built")

        self.nav("nav-jobs", "jobs")
        rows = self.css("#jobs-table tr.job-row")
        check(rows, "Monitor lists no job")
        first = rows[0]
        check(first.get_attribute("data-status") == "FINISHED", f"newest job: {first.get_attribute('data-status')}")
        check(first.find_element(By.CSS_SELECTOR, ".job-progress").get_attribute("data-progress") == "100", "newest job at 100 %")
        self.shot("monitor")

        self.query()

        self.nav("nav-system", "system")
        info = {e.get_attribute("data-key"): e.text for e in self.css("#system-info dd")}
        check(info.get("version") and info.get("mode") == "all", f"system page: {info}")
        check(info.get("metadata_version", "").isdigit(), f"metadata version: {info}")
        self.report["system"] = info
        self.shot("system")

        self.access()
        self.audit()
        self.one("#sign-out").click()
        self.page("login")
        self.as_viewer()

        self.one("#sign-out").click()
        self.page("login")
        d.get(c["url"].rstrip("/") + "/#/jobs")
        self.page("login")

    def submit(self, form, message):
        """Submits form `form` and waits for its message; fails if it is an error."""
        self.one(f"#{form} button[type=submit]").click()

        def reported(d):
            m = d.find_element(By.ID, message)
            return m.text and m

        m = self.wait(f"the answer of {form}", reported)
        check("error" not in (m.get_attribute("class") or ""), f"{form}: {m.text}")
        return m.text

    def access(self):
        """As the global admin: a user, its grant and row filter, an API key."""
        c = self.cfg
        check(self.one("#nav-access").is_displayed() and self.one("#nav-audit").is_displayed(), "admin links shown")
        self.nav("nav-access", "access")
        self.one("#new-user-name").send_keys("viewer")
        self.one("#new-user-password").send_keys("viewer-pw")
        self.one("#new-user-groups").send_keys("analysts")
        self.submit("user-form", "user-message")
        self.wait("viewer in the users table", lambda d: d.find_elements(By.CSS_SELECTOR, '#users-table tr.user-row[data-user="viewer"]'))
        Select(self.one("#access-project")).select_by_value(c["project"])
        Select(self.one("#grant-kind")).select_by_value("user")
        self.one("#grant-name").send_keys("viewer")
        Select(self.one("#grant-role")).select_by_value("QUERY")
        self.submit("grant-form", "grant-message")
        self.wait("the grant row", lambda d: d.find_elements(By.CSS_SELECTOR, '#grants-table tr.grant-row[data-principal="user viewer"][data-role="QUERY"]'))
        Select(self.one("#rule-table")).select_by_value("customer")
        Select(self.one("#rule-kind")).select_by_value("user")
        self.one("#rule-name").send_keys("viewer")
        Select(self.one("#rule-type")).select_by_value("row_filter")
        self.one("#rule-filter").send_keys(c["row_filter"])
        self.submit("rule-form", "rule-message")
        self.wait("the rule row", lambda d: d.find_elements(By.CSS_SELECTOR, '#rules-table tr.rule-row[data-type="row_filter"]'))
        # A rule the store refuses (no such column) is reported in the page, nothing added.
        Select(self.one("#rule-type")).select_by_value("deny_column")
        self.one("#rule-column").send_keys("no_such_column")
        self.one("#rule-submit").click()
        err = self.wait("the refused rule", lambda d: "error" in (d.find_element(By.ID, "rule-message").get_attribute("class") or "") and d.find_element(By.ID, "rule-message"))
        check("no_such_column" in err.text, f"refused rule message: {err.text!r}")
        check(len(self.css("#rules-table tr.rule-row")) == 1, "the refused rule was not added")
        # The built-in ADMIN has no keys of its own: one for viewer.
        self.one("#key-user").send_keys("viewer")
        self.one("#key-expires").send_keys("30d")
        self.submit("key-form", "key-message")
        secret = self.wait("the new key", lambda d: d.find_element(By.ID, "key-secret").is_displayed() and d.find_element(By.CSS_SELECTOR, "#key-secret code"))
        check(secret.text.startswith("qk_"), f"API key shown: {secret.text[:8]!r}")
        row = self.wait("the key row", lambda d: d.find_elements(By.CSS_SELECTOR, "#keys-table tr.key-row"))
        check(row[0].find_element(By.CSS_SELECTOR, "td:nth-child(2)").text == "viewer", "the key is viewer's")
        self.shot("access")

    def audit(self):
        """The audit log page shows the refused sign-in and the changes just made."""
        self.nav("nav-audit", "audit")
        Select(self.one("#audit-limit")).select_by_value("2000")
        self.wait("the audit log with the grant", lambda d: d.find_elements(By.CSS_SELECTOR, '#audit-table tr.audit-row[data-action="grant"]'))
        events = [
            (r.get_attribute("data-user"), r.get_attribute("data-action"), r.get_attribute("data-outcome"))
            for r in self.css("#audit-table tr.audit-row")
        ]
        self.report["audit"] = events
        user = self.cfg["user"]
        for want in [(user, "sign-in", "denied"), (user, "sign-in", "ok"), (user, "user.create", "ok"), (user, "grant", "ok"), (user, "acl.add", "ok"), (user, "acl.add", "failed"), (user, "apikey.create", "ok")]:
            check(want in events, f"audit page lacks {want}: {events[:40]}")
        self.shot("audit")

    def as_viewer(self):
        """A QUERY user: no admin links, the audit page refused, its row filter applied."""
        c = self.cfg
        self.one("#login-user").send_keys("viewer")
        self.one("#login-password").send_keys("viewer-pw")
        self.one("#login-submit").click()
        self.page("projects")
        check(not self.one("#nav-access").is_displayed() and not self.one("#nav-audit").is_displayed(), "admin links hidden from viewer")
        projects = [a.get_attribute("data-project") for a in self.css("a.project-link")]
        check(projects == [c["project"]], f"viewer's projects: {projects}")
        self.driver.get(c["url"].rstrip("/") + "/#/audit")
        forbidden = self.wait("the refused audit page", lambda d: d.find_element(By.ID, "forbidden"))
        check("global admin" in forbidden.text, f"403 message: {forbidden.text!r}")
        self.shot("viewer-audit-refused")
        self.nav("nav-query", "query")
        Select(self.one("#query-project")).select_by_value(c["project"])
        box = self.one("#query-sql")
        box.clear()
        box.send_keys(c["region_sql"])
        self.one("#query-run").click()
        state = self.wait("the viewer's query", lambda d: d.find_element(By.ID, "query-status").get_attribute("data-state") in ("done", "error") and d.find_element(By.ID, "query-status").get_attribute("data-state"))
        check(state == "done", f"the viewer's query failed: {self.page_state()}")
        self.report["viewer_rows"] = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#query-results tbody tr.result-row'))"
            ".map(r => Array.from(r.cells).map(c => c.textContent));"
        )
        self.shot("viewer-query")

    def query(self):
        c = self.cfg
        d = self.driver
        self.nav("nav-query", "query")
        Select(self.one("#query-project")).select_by_value(c["project"])
        self.one("#query-sql").send_keys(c["sql"])
        self.one("#query-run").click()
        state = self.wait("the query to finish", lambda d: d.find_element(By.ID, "query-status").get_attribute("data-state") in ("done", "error") and d.find_element(By.ID, "query-status").get_attribute("data-state"))
        check(state == "done", f"the query failed: {self.page_state()}")
        table = self.one("#query-results")
        headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        # One round trip for all cells (hundreds of rows).
        rows = d.execute_script(
            "return Array.from(document.querySelectorAll('#query-results tbody tr.result-row'))"
            ".map(r => Array.from(r.cells).map(c => c.textContent));"
        )
        check(len(rows) == c["rows"], f"Q2.1 shows {len(rows)} rows, the oracle has {c['rows']}")
        self.report["columns"] = headers
        self.report["rows"] = rows
        cube = self.one("#query-cube").text
        check(c["cube"] in cube, f"answered by {cube!r}, not cube {c['cube']}")
        explain = {r.get_attribute("data-type"): r.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text for r in self.css("#query-explain tr.explain-row")}
        self.report["explain"] = explain
        check("cuboid" in explain.get("cuboid", ""), f"EXPLAIN shows no cuboid: {explain}")
        check(c["cube"] in explain.get("realization", ""), f"EXPLAIN realization: {explain}")
        check(explain.get("blocks", "").startswith("read "), f"EXPLAIN blocks: {explain}")
        check(self.one("#query-duration").get_attribute("data-ms").isdigit(), "duration shown")
        bars = self.css("#query-chart rect.bar")
        check(len(bars) == min(len(rows), 500), f"bar chart: {len(bars)} bars for {len(rows)} rows")
        check(max(float(b.get_attribute("height")) for b in bars) > 50, "bars have visible heights")
        self.report["chart"] = {"bars": len(bars), "label": Select(self.one("#chart-label")).first_selected_option.text, "value": Select(self.one("#chart-value")).first_selected_option.text}
        self.shot("query")
        check(not self.css("#query-fallback"), "Q2.1 reads its own cuboid: no fallback warning")
        Select(self.one("#chart-type")).select_by_value("line")
        self.wait("a line chart", lambda d: d.find_elements(By.CSS_SELECTOR, "#query-chart path.chart-line"))
        self.shot("query-line-chart")
        Select(self.one("#chart-type")).select_by_value("bar")

        # CSV download: header + one line per row.
        csv_path = os.path.join(self.out, "qilin-query.csv")
        if os.path.exists(csv_path):
            os.remove(csv_path)
        self.one("#query-csv").click()
        self.wait("the CSV download", lambda d: os.path.exists(csv_path) and os.path.getsize(csv_path) > 0)
        with open(csv_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        check(lines[0].split(",") == headers and len(lines) == len(rows) + 1, f"CSV: {len(lines)} lines, header {lines[:1]}")

        # History survives a reload (same user) and reloads a query on click.
        d.refresh()
        self.page("query")
        items = self.css("#query-history li.history-item")
        check(items and items[0].get_attribute("data-sql").strip() == c["sql"].strip().rstrip(";"), "query history after a reload")
        self.one("#query-sql").clear()
        items[0].click()
        check(self.one("#query-sql").get_property("value").strip() == c["sql"].strip().rstrip(";"), "history click reloads the SQL")

        # A query crossing aggregation groups reads the base cuboid: the page warns.
        if c.get("fallback_sql"):
            box = self.one("#query-sql")
            box.clear()
            box.send_keys(c["fallback_sql"])
            self.one("#query-run").click()
            warn = self.wait("the fallback warning", lambda d: d.find_elements(By.ID, "query-fallback") and d.find_element(By.ID, "query-fallback"))
            check("c_city" in warn.text and "base" in warn.text, f"fallback warning: {warn.text!r}")
            explain = {r.get_attribute("data-type"): r.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text for r in self.css("#query-explain tr.explain-row")}
            check("c_city" in explain.get("fallback", ""), f"EXPLAIN fallback row: {explain}")
            self.report["fallback"] = warn.text
            self.shot("query-fallback")

        # A SQL error is shown in the page.
        box = self.one("#query-sql")
        box.clear()
        box.send_keys("SELECT no_such_column FROM lineorder")
        self.one("#query-run").click()
        err = self.wait("the SQL error", lambda d: d.find_element(By.ID, "query-error"))
        check("no_such_column" in err.text, f"SQL error message: {err.text!r}")
        self.report["sql_error"] = err.text
        self.shot("query-error")

    def segments(self):
        return [
            (r.get_attribute("data-status"), int(r.get_attribute("data-start")), int(r.get_attribute("data-end")))
            for r in self.css("#segments tr.segment-row")
        ]

    @staticmethod
    def day_ms(day):
        """Midnight UTC of YYYY-MM-DD in ms, as the console sends it."""
        return calendar.timegm(time.strptime(day, "%Y-%m-%d")) * 1000


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    os.makedirs(cfg["out"], exist_ok=True)
    console = Console(cfg)
    code = 0
    try:
        console.run()
    except Exception as e:  # noqa: BLE001 - every failure is reported with the page's state
        code = 1
        msg = str(e) if isinstance(e, CheckFailed) else traceback.format_exc()
        print(f"FAILED: {msg}", file=sys.stderr)
        console.report["failure"] = msg
        try:
            console.driver.save_screenshot(os.path.join(cfg["out"], "failure.png"))
            for entry in console.driver.get_log("browser"):
                print(f"browser: {entry.get('level')} {entry.get('message')}", file=sys.stderr)
        except Exception:  # noqa: BLE001
            pass
    finally:
        with open(os.path.join(cfg["out"], "report.json"), "w", encoding="utf-8") as f:
            json.dump(console.report, f, indent=1)
        console.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
