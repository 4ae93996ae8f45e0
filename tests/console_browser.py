"""The console in a real browser: Debian's Chromium driven by Playwright, presenting
the demo's client certificates (the admin's and auditor's as the PKCS#12 bundles the
demo writes for browsers, the counter's as PEM). Run by tests/console.rs, one phase
per call, against a gateway it started; the Rust test makes the counter's lookups
between the phases.

    python3 console_browser.py PHASE BASE PKI PASSWORD SHOTS [ARGS…]

Exit 0 when every check of the phase holds; otherwise a message and exit 1.
Screenshots of every page visited go to SHOTS/<phase>-<name>.png.
"""

import sys
from datetime import date, timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


class Phase:
    def __init__(self, base, pki, password, shots, name):
        self.base, self.pki, self.password = base, Path(pki), password
        self.shots, self.name = Path(shots), name
        self.shots.mkdir(parents=True, exist_ok=True)

    def context(self, browser, who, locale="zh-CN"):
        if who in ("admin", "auditor"):
            cert = {"origin": self.base, "pfxPath": str(self.pki / f"{who}.p12"),
                    "passphrase": self.password}
        else:
            cert = {"origin": self.base, "certPath": str(self.pki / f"{who}.pem"),
                    "keyPath": str(self.pki / f"{who}.key")}
        # The gateway's server certificate is the demo CA's; the browser is not told
        # to trust that CA, so certificate errors of the server are ignored here (the
        # client certificate is what these tests are about).
        return browser.new_context(client_certificates=[cert], ignore_https_errors=True,
                                   locale=locale, viewport={"width": 1360, "height": 900})

    def shot(self, page, name, full=True):
        page.screenshot(path=str(self.shots / f"{self.name}-{name}.png"), full_page=full)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_page(page, url, status, *texts):
    """Open url; the status and every text must be there."""
    r = page.goto(url)
    check(r is not None and r.status == status, f"{url}: status {r.status if r else None}, want {status}")
    body = page.content()
    for t in texts:
        check(t in body, f"{url}: {t!r} not on the page")
    headers = r.headers
    csp = headers.get("content-security-policy", "")
    check("script-src 'self'" in csp and "unsafe-inline" not in csp, f"{url}: CSP {csp!r}")
    check(headers.get("x-frame-options") == "DENY", f"{url}: X-Frame-Options")
    check(headers.get("cache-control") == "no-store", f"{url}: Cache-Control")
    check(headers.get("referrer-policy") == "same-origin", f"{url}: Referrer-Policy")
    return r


def detail(page):
    """The error page's detail, for a failure message."""
    d = page.locator("p.detail, .error")
    return d.first.inner_text() if d.count() else page.content()[:500]


def no_console_errors(page):
    """Collects CSP violations and script errors of a page (not the refused loads
    the test asks for on purpose: 403 and 400 pages, the favicon's 404)."""
    errors = []
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


PAGES = ["/console/", "/console/records", "/console/records/1", "/console/subjects",
         "/console/anomalies", "/console/charts", "/console/health", "/console/datasets",
         "/console/agreements", "/console/agreements/new", "/console/agreements/hrss-population-2026",
         "/console/roles", "/console/explain", "/console/requests", "/console/usage"]


def forbidden(p, browser):
    """A counter's certificate gets 403 on every console page, in Chinese."""
    page = p.context(browser, "counter-a").new_page()
    for path in PAGES:
        expect_page(page, p.base + path, 403, "需要相应角色", "dept-admin or auditor")
    p.shot(page, "forbidden")


def admin(p, browser, agreement, consumer, matter):
    """The admin reads its pages and creates an agreement through the form; a forged
    form from another origin is refused."""
    ctx = p.context(browser, "admin")
    page = ctx.new_page()
    errors = no_console_errors(page)
    expect_page(page, p.base + "/console/", 200, "部门管理员", "urn:tongban:sz-psb:admin-01")
    check("/console/records" not in page.content(), "an admin is offered the officer's pages")
    p.shot(page, "home")
    expect_page(page, p.base + "/console/datasets", 200, "population", "household_address")
    p.shot(page, "datasets")
    expect_page(page, p.base + "/console/agreements", 200, "hrss-population-2026", "civil-population-2026")
    check("hrss-legal-person-2026" not in page.content(), "another department's agreement is listed")
    p.shot(page, "agreements")
    # The auditor's pages are the auditor API's: refused to an admin.
    expect_page(page, p.base + "/console/records", 403, "需要相应角色")

    # The form with a mistake: no matter ticked. The API's own error, beside the input.
    page.goto(p.base + "/console/agreements/new?dataset=population")
    page.fill("input[name=id]", agreement)
    page.fill("input[name=consumer]", consumer)
    page.select_option("select[name='field.name']", "full")
    page.select_option("select[name='field.birth_date']", "full")
    page.select_option("select[name='field.household_address']", "masked")
    page.fill("input[name=valid_until]", "2099-12-31")
    with page.expect_navigation() as nav:
        page.click("#save")
    check(nav.value.status == 400, f"an agreement without matters: {nav.value.status} {detail(page)}")
    err = page.locator("p.error[data-field=matters]")
    check(err.count() == 1 and "must name at least one matter" in err.inner_text(),
          "the matters error is shown beside the matters")
    check(page.input_value("input[name=id]") == agreement, "the form keeps what was typed")
    p.shot(page, "agreement-form-error")

    page.check(f"input[name=matters][value={matter}]")
    with page.expect_navigation() as nav:
        page.click("#save")
    check(page.url.endswith(f"/console/agreements/{agreement}"), f"after saving: {page.url}")
    body = page.content()
    for t in (agreement, consumer, matter, "变更历史", "新建", "urn:tongban:sz-psb:admin-01"):
        check(t in body, f"the new agreement's page lacks {t!r}")
    p.shot(page, "agreement")

    expect_page(page, f"{p.base}/console/explain?consumer={consumer}&dataset=population&matter={matter}&fields=name",
                200, "允许", agreement)
    p.shot(page, "explain")
    expect_page(page, p.base + "/console/roles", 200, "urn:tongban:sz-psb:admin-01", "dept-admin")
    p.shot(page, "roles")

    review(p, page)

    # Cross-site request forgery. A page of another origin posts a form to the
    # gateway: the browser sends the client certificate, but the console refuses.
    evil = ctx.new_page()
    evil.set_content(
        f'<form method="post" action="{p.base}/console/agreements/new">'
        f'<input name="id" value="forged"><input name="consumer" value="{consumer}">'
        f'<input name="matters" value="{matter}"><input name="field.name" value="full">'
        '<input name="valid_from" value="2026-01-01"><input name="valid_until" value="2099-12-31">'
        '<button id="go">go</button></form>')
    with evil.expect_navigation() as nav:
        evil.click("#go")
    check(nav.value.status == 403, f"a form from another origin: {nav.value.status}")
    check("拒绝跨站请求" in evil.content(), "the refusal says why, in Chinese")
    p.shot(evil, "csrf-refused")
    # The console's own origin but no token (a script replaying a form).
    r = page.request.post(p.base + "/console/agreements/new",
                          form={"id": "forged", "consumer": consumer, "matters": matter},
                          headers={"Origin": p.base})
    check(r.status == 403 and "拒绝跨站请求" in r.text(), f"a form without the token: {r.status}")
    # The token of this session, but another origin.
    page.goto(p.base + "/console/agreements/new")
    token = page.locator("input[name=csrf]").first.input_value()
    r = page.request.post(p.base + "/console/agreements/new",
                          form={"csrf": token, "id": "forged", "consumer": consumer, "matters": matter},
                          headers={"Origin": "https://evil.example"})
    check(r.status == 403, f"a form from another Origin with the token: {r.status}")
    expect_page(page, p.base + "/console/agreements", 200, agreement)
    check("forged" not in page.content(), "a forged agreement was created")

    # English by the switch, kept by its cookie.
    page.click("#lang-switch")
    check("Sharing agreements" in page.content(), "the switch gives English")
    page.goto(p.base + "/console/agreements/" + agreement)
    check("History" in page.content() and "变更历史" not in page.content(), "English stays")
    p.shot(page, "agreement-en")
    check(not errors, f"console errors (CSP violations?): {errors}")


def review(p, page):
    """The admin opens the access requests, the demo's pending one, narrows it (one
    field less, a lower quota, a shorter validity) and approves it through the form."""
    expect_page(page, p.base + "/console/requests", 200, "向本部门提出的申请", "urn:tongban:sz-hf:counter-01")
    row = page.locator("#to-review tbody tr").filter(has_text="urn:tongban:sz-hf:counter-01").filter(has_text="待审核")
    check(row.count() == 1, f"the demo's pending request is listed once to review: {row.count()}")
    late = page.locator("#to-review tbody tr.overdue")
    check(late.count() == 1 and "超期" in late.inner_text() and "urn:tongban:sz-hf:archive-01" in late.inner_text(),
          "the request past its review deadline stands out")
    p.shot(page, "requests")
    row.locator("a").first.click()
    page.wait_for_load_state()
    for t in ("住房公积金管理条例", "housing-fund-withdrawal", "approve-form"):
        check(t in page.content(), f"the request's page lacks {t!r}")
    p.shot(page, "request")
    request_url = page.url
    page.select_option("#approve-form select[name='field.birth_date']", "")
    page.fill("#approve-form input[name=daily_quota]", "500")
    until = (date.today() + timedelta(days=180)).isoformat()
    page.fill("#approve-form input[name=valid_until]", until)
    with page.expect_navigation() as nav:
        page.click("#approve")
    check(page.url == request_url, f"after approving: {page.url}, {detail(page)}")
    body = page.content()
    for t in ("已批准", "urn:tongban:sz-psb:admin-01"):
        check(t in body, f"the approved request's page lacks {t!r}")
    check("approve-form" not in body, "an approved request offers the approve form again")
    p.shot(page, "request-approved")
    agreement = page.locator("table.members tr").filter(has_text="生成的协议").locator("td").inner_text()
    r = page.request.get(f"{p.base}/admin/v1/agreements/{agreement}")
    check(r.status == 200, f"the agreement {agreement}: {r.status}")
    a = r.json()["agreement"]
    check(sorted(a["fields"]) == ["household_address", "name"], f"narrowed fields: {a['fields']}")
    check(a["daily_quota"] == 500, f"narrowed quota: {a['daily_quota']}")
    check(a["valid_until"].startswith(until), f"narrowed validity: {a['valid_until']}")


def usage(p, browser):
    """The admin's usage page: charts with the numbers beside them."""
    page = p.context(browser, "admin").new_page()
    errors = no_console_errors(page)
    expect_page(page, p.base + "/console/usage", 200, "每日查询量（按调用方）", "拒绝原因", "数据源延迟与可用性")
    check(page.locator("#usage-consumers svg.chart rect").count() >= 1, "the consumers chart has columns")
    check(page.locator("#usage-refusals svg.chart rect.deny").count() >= 1, "the refusals chart has bars")
    total = int(page.locator("td[data-total=lookups]").inner_text())
    check(total > 0, "lookups counted")
    p.shot(page, "usage")
    check(not errors, f"console errors (CSP violations?): {errors}")


def english_by_browser(p, browser):
    """A browser that prefers English gets English without switching."""
    page = p.context(browser, "auditor", locale="en-US").new_page()
    expect_page(page, p.base + "/console/", 200, "Security officer", "Audit search")


def auditor(p, browser, subject, case_id, consumer):
    """The officer finds the lookup in the search, proven, and in the subject's report."""
    ctx = p.context(browser, "auditor")
    page = ctx.new_page()
    errors = no_console_errors(page)
    expect_page(page, p.base + "/console/", 200, "安全审计员")
    p.shot(page, "home")
    page.goto(p.base + "/console/records")
    page.fill("input[name=case_id]", case_id)
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    rows = page.locator("table.records tbody tr")
    check(rows.count() >= 1, "the search finds the lookup by its case id")
    allowed = rows.filter(has_text=consumer).filter(has_text="允许")
    check(allowed.count() == 1, f"one allowed lookup by {consumer}: {allowed.count()}")
    check("已核验" in allowed.inner_text(), "its proof checks against the signed checkpoint")
    denied = rows.filter(has_text="拒绝")
    check(denied.count() >= 1, "the refused lookup before the agreement is found too")
    p.shot(page, "records")
    allowed.locator("a").first.click()
    page.wait_for_load_state()
    for t in (subject, case_id, consumer, "已核验", "answer_sha256"):
        check(t in page.content(), f"the record's page lacks {t!r}")
    p.shot(page, "record")

    expect_page(page, f"{p.base}/console/subjects?subject={subject}", 200, case_id, consumer, "打印报告")
    p.shot(page, "subject")
    page.emulate_media(media="print")
    check(not page.locator("header.top").is_visible(), "the print sheet hides the navigation")
    p.shot(page, "subject-print")
    page.emulate_media(media="screen")

    expect_page(page, p.base + "/console/anomalies?from=2020-01-01", 200, "异常报告")
    p.shot(page, "anomalies")
    expect_page(page, p.base + "/console/charts", 200, "每小时查询量", "<svg")
    check(page.locator("svg.chart rect.allow").count() >= 1, "the hourly chart has allowed lookups")
    p.shot(page, "charts")
    expect_page(page, p.base + "/console/health", 200, "签名有效")
    p.shot(page, "health")
    # An admin's page is the admin API's: refused to the officer.
    expect_page(page, p.base + "/console/agreements", 403, "需要相应角色")
    check(not errors, f"console errors (CSP violations?): {errors}")


def main():
    phase, base, pki, password, shots, *args = sys.argv[1:]
    p = Phase(base, pki, password, shots, phase)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        try:
            {"forbidden": lambda: forbidden(p, browser),
             "admin": lambda: admin(p, browser, *args),
             "english": lambda: english_by_browser(p, browser),
             "usage": lambda: usage(p, browser),
             "auditor": lambda: auditor(p, browser, *args)}[phase]()
        finally:
            browser.close()
    print(f"{phase}: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}")
        sys.exit(1)
