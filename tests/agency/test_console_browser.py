"""An operator's round through the console in headless Chromium (docs/console.md): the dashboard's
counts, the inbox they link to, an escalation acknowledged and resolved from its page, a draft bid
approved, an arena challenger promoted and reverted. Each step checks what the page shows.

Screenshots of the dashboard, the inbox and an escalation page at 1400 x 900 are left in
`tests.browser.SCREENSHOTS` (git-ignored); the test prints where."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from agency.models import AgentProfile
from arena.models import PairStanding
from bids.models import Bid
from escalations.models import Escalation
from escalations.services import escalation_open
from tests.agency.factories import TaskFactory, domain
from tests.arena.factories import ProfileFactory
from tests.bids.factories import BidFactory, MarketplaceFactory, PostingFactory
from tests.browser import HEIGHT, SCREENSHOTS, WIDTH, fits_the_window, follow, log_in, messages, screenshot

pytestmark = [pytest.mark.single_pass, pytest.mark.django_db(transaction=True)]


def attention_counts(driver) -> dict[str, int]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#attention tr[data-item]")
    return {row.get_attribute("data-item"): int(row.find_element(By.CSS_SELECTOR, "td.count").text) for row in rows}


def changelist_rows(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")


def run_action(driver, row_text: str, action: str) -> None:
    [row] = [r for r in changelist_rows(driver) if row_text in r.text]
    row.find_element(By.NAME, "_selected_action").click()
    Select(driver.find_element(By.NAME, "action")).select_by_value(action)
    follow(driver, driver.find_element(By.NAME, "index"))


@pytest.fixture
def agency_to_operate(django_user_model):
    django_user_model.objects.create_superuser("op", "op@example.com", "correct horse battery")
    urgent = TaskFactory(status="processing", title="Reconcile Q3", is_high_value=True, attempts=3,
                         last_error="model timed out")  # fmt: skip
    escalation_open(task=urgent, reason="attempts_exhausted", actor="pipeline",
                    context={"attempts": 3, "error": "model timed out"})  # fmt: skip
    escalation_open(
        task=TaskFactory(status="processing", title="Tidy a CSV"), reason="no_capable_agent", actor="pipeline"
    )
    market = MarketplaceFactory(name="Gigs", training_mode=True)
    BidFactory(posting=PostingFactory(marketplace=market, title="Sales totals per region"), status="draft")
    BidFactory(posting=PostingFactory(marketplace=market), status="submitted")
    incumbent = AgentProfile.objects.get_or_create(name="baseline", defaults={"kind": "baseline", "priority": 1000})[0]
    challenger = ProfileFactory(name="challenger")
    first, second = sorted([incumbent, challenger], key=lambda p: p.pk)
    PairStanding.objects.create(domain=domain("legal"), first=first, second=second, first_wins=2, second_wins=9)
    return challenger


def test_an_operator_works_the_agency_from_the_dashboard(browser, live_server, agency_to_operate, capsys):
    challenger = agency_to_operate
    log_in(browser, live_server.url, "op", "correct horse battery")

    # The dashboard: its counts are the database's.
    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Dashboard"
    counts = attention_counts(browser)
    unresolved = Escalation.objects.exclude(status="resolved")
    assert counts["High-severity escalations"] == unresolved.filter(severity="high").count() == 1
    assert counts["Normal escalations"] == unresolved.filter(severity="normal").count() == 1
    assert counts["Draft bids awaiting approval"] == Bid.objects.filter(status="draft").count() == 1
    assert counts["Dead notifications"] == 0 and counts["Tasks stuck past their lease"] == 0
    assert browser.find_element(By.ID, "money-total").is_displayed()
    assert "challenger" in browser.find_element(By.ID, "arena-standings").text
    assert fits_the_window(browser)
    shots = [screenshot(browser, "dashboard")]

    # Follow the high-severity line to the inbox, filtered to that one escalation.
    follow(browser, browser.find_element(By.LINK_TEXT, "High-severity escalations"))
    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Operator inbox"
    [row] = changelist_rows(browser)
    assert "Reconcile Q3" in row.text and "model timed out" in row.text
    assert fits_the_window(browser)
    shots.append(screenshot(browser, "inbox"))

    # Acknowledge and resolve it from its own page.
    follow(browser, row.find_element(By.CSS_SELECTOR, "th a, td a"))
    assert "Reconcile Q3" in browser.find_element(By.CSS_SELECTOR, "#content h1").text
    shots.append(screenshot(browser, "escalation"))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#acknowledge-form input[type=submit]"))
    assert "acknowledged" in messages(browser).lower()
    assert not browser.find_elements(By.ID, "acknowledge-form")
    follow(browser, browser.find_element(By.ID, "resolve-link"))
    Select(browser.find_element(By.NAME, "resolution")).select_by_value("failed")
    browser.find_element(By.NAME, "note").send_keys("The client withdrew the request.")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#resolve-form input[type=submit]"))
    assert "resolved: failed" in messages(browser)
    assert "Resolved as" in browser.find_element(By.ID, "operator-actions").text

    # Approve the draft bid from the list the dashboard links to.
    browser.get(f"{live_server.url}/admin/")
    assert attention_counts(browser)["High-severity escalations"] == 0
    follow(browser, browser.find_element(By.LINK_TEXT, "Draft bids awaiting approval"))
    run_action(browser, "Sales totals per region", "approve")
    assert "1 bid(s) approved." in messages(browser)
    assert (
        not changelist_rows(browser) or "Sales totals per region" not in browser.find_element(By.ID, "result_list").text
    )
    assert Bid.objects.get(posting__title="Sales totals per region").status == "simulated"  # training mode

    # Promote the challenger from the standings, then revert it.
    browser.get(f"{live_server.url}/admin/")
    follow(browser, browser.find_element(By.LINK_TEXT, "All standings, promotions and reverts"))
    side = "second" if PairStanding.objects.get().second_id == challenger.pk else "first"
    run_action(browser, "legal", f"promote_{side}")
    assert "1 pair(s) promoted." in messages(browser)
    [standing] = changelist_rows(browser)
    assert standing.find_element(By.CSS_SELECTOR, "td.field-routed").text == "challenger"
    run_action(browser, "legal", "revert_promotion")
    assert "1 pair(s) reverted and held." in messages(browser)
    [standing] = changelist_rows(browser)
    assert standing.find_element(By.CSS_SELECTOR, "td.field-routed").text != "challenger"
    browser.get(f"{live_server.url}/admin/")
    assert "Held" in browser.find_element(By.ID, "arena-standings").text

    with capsys.disabled():
        print(f"\nScreenshots at {WIDTH} x {HEIGHT}: " + ", ".join(str(p) for p in shots))
    assert all(p.parent == SCREENSHOTS and p.stat().st_size > 10_000 for p in shots)
