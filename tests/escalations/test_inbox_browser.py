"""The operator inbox in a real browser (headless Chromium): log in, read the inbox at 1400 px, then
acknowledge, assign and resolve (uploading the finished work) with the escalation page's own buttons
(docs/escalations.md)."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from agency.models import Task
from escalations.models import Notification
from escalations.services import escalation_acknowledge, escalation_assign, escalation_open, escalation_resolve
from tests.agency.factories import TaskFactory
from tests.browser import fits_the_window, follow, log_in, messages
from tests.escalations.factories import ChannelFactory

pytestmark = [pytest.mark.single_pass, pytest.mark.django_db(transaction=True)]


INBOX_HEADERS = ["TASK", "REASON", "SEVERITY", "STATUS", "WAITING", "ATTEMPTS", "LAST ERROR", "ASSIGNEE"]


def assert_fits_without_horizontal_scroll(driver, headers: list[str]) -> None:
    """Neither the page nor the table's own scrolling box (the admin's `.results`) scrolls sideways,
    and each column header is inside the window."""
    assert fits_the_window(driver)
    shown = driver.find_elements(By.CSS_SELECTOR, "#result_list thead th:not(.action-checkbox-column)")
    assert [th.text for th in shown] == headers
    inner_width = driver.execute_script("return window.innerWidth")
    assert all(th.is_displayed() and th.rect["x"] + th.rect["width"] <= inner_width for th in shown)


# The height of a cell's content over its line height: 1 for a cell on one line.
LINES = """
const range = document.createRange();
range.selectNodeContents(arguments[0]);
return range.getBoundingClientRect().height / parseFloat(getComputedStyle(arguments[0]).lineHeight);
"""


def assert_on_one_line(driver, columns: list[str]) -> None:
    for cell in driver.find_elements(By.CSS_SELECTOR, ", ".join(f"#result_list td.field-{c}" for c in columns)):
        assert driver.execute_script(LINES, cell) < 1.5, cell.get_attribute("class")


def test_an_operator_works_an_escalation_from_the_inbox_to_its_resolution(
    browser, live_server, django_user_model, tmp_path
):
    django_user_model.objects.create_superuser("op", "op@example.com", "correct horse battery")
    margaret = django_user_model.objects.create_user("margaret.hamilton", is_staff=True)
    long_error = "openai.APITimeoutError: Request timed out after 60.0 seconds while waiting for the model " * 3
    task = TaskFactory(status="processing", title="Reconcile Q3", attempts=3, last_error=long_error)
    escalation, _ = escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
    # Neighbours with the widest cells: long titles and errors, an assignee, "acknowledged", a resolved one.
    for n, reason in enumerate(["high_value_failure", "no_capable_agent", "arena_no_winner", "budget_exceeded"]):
        other = TaskFactory(status="processing", title=f"Reconcile the Q{n} ledger of the northern region", attempts=3,
                            last_error=long_error, is_high_value=n % 2 == 0)  # fmt: skip
        neighbour, _ = escalation_open(task=other, reason=reason, actor="pipeline")
        if n == 0:
            escalation_acknowledge(escalation=neighbour, actor="pipeline")
            escalation_assign(escalation=neighbour, assignee=margaret, actor="pipeline")
        if n == 1:
            escalation_resolve(escalation=neighbour, resolution="dismissed", actor="pipeline")

    log_in(browser, live_server.url, "op", "correct horse battery", next_path="/admin/escalations/escalation/")

    assert browser.title.startswith("Operator inbox")
    assert_fits_without_horizontal_scroll(browser, INBOX_HEADERS)
    assert_on_one_line(browser, ["severity", "status", "waiting", "attempts"])
    [row] = [r for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr") if "Reconcile Q3" in r.text]
    assert "Attempts Exhausted" in row.text and "openai.APITimeoutError" in row.text and "0 min" in row.text
    follow(browser, row.find_element(By.LINK_TEXT, f"#{task.pk} Reconcile Q3"))

    assert browser.find_element(By.TAG_NAME, "h1").text == (
        f"Escalation #{escalation.pk}: Reconcile Q3 — attempts exhausted"
    )
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#acknowledge-form input[type=submit]"))
    assert f"Escalation #{escalation.pk} acknowledged." in messages(browser)
    assert not browser.find_elements(By.ID, "acknowledge-form")  # done: the button is gone

    Select(browser.find_element(By.NAME, "assignee")).select_by_visible_text("margaret.hamilton")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#assign-form input[type=submit]"))
    assert f"Escalation #{escalation.pk} assigned to margaret.hamilton." in messages(browser)

    follow(browser, browser.find_element(By.ID, "resolve-link"))
    Select(browser.find_element(By.NAME, "resolution")).select_by_value("completed_manually")
    browser.find_element(By.NAME, "note").send_keys("Reconciled by hand")
    work = tmp_path / "q3-reconciliation.csv"
    work.write_text("account,difference\n4000,0\n")
    browser.find_element(By.NAME, "deliverable").send_keys(str(work))
    follow(browser, browser.find_element(By.CSS_SELECTOR, "#resolve-form input[type=submit]"))
    assert "resolved: completed_manually" in messages(browser)
    assert browser.current_url.endswith(f"/escalations/escalation/{escalation.pk}/change/")
    assert browser.find_element(By.ID, "operator-actions").text.startswith("Resolved as completed manually")
    timeline = browser.find_elements(By.CSS_SELECTOR, "ol.escalation-timeline li")
    assert [row.text.split(" — ", 1)[1] for row in timeline] == [
        "the pipeline opened the escalation: attempts exhausted.",
        "operator op (admin) acknowledged it.",
        "operator op (admin) assigned it to margaret.hamilton.",
        "operator op (admin) resolved it as completed manually: Reconciled by hand.",
    ]

    escalation.refresh_from_db()
    assert (escalation.status, escalation.resolution) == ("resolved", "completed_manually")
    assert escalation.assignee.username == "margaret.hamilton"
    task = Task.objects.get(pk=task.pk)
    assert task.status == "completed"
    [deliverable] = task.deliverables.all()
    assert deliverable.name == "q3-reconciliation.csv" and deliverable.file.read() == work.read_bytes()


def test_the_outbox_fits_a_1400_px_window(browser, live_server, django_user_model):
    django_user_model.objects.create_superuser("op", "op@example.com", "correct horse battery")
    ChannelFactory(name="ops mail", kind="email", target="ops@example.com")
    ChannelFactory(name="pager on call, secondary rota", kind="webhook", target="http://127.0.0.1:9/")
    for n in range(3):
        task = TaskFactory(status="processing", title=f"Reconcile the Q{n} ledger of the northern region")
        escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
    error = "550 5.1.1 <ops@example.com>: Recipient address rejected: User unknown in virtual mailbox table"
    Notification.objects.filter(pk=Notification.objects.earliest("pk").pk).update(status="dead", last_error=error)
    Notification.objects.filter(status="pending").update(status="cancelled")

    log_in(browser, live_server.url, "op", "correct horse battery", next_path="/admin/escalations/notification/")

    assert browser.title.startswith("Notification outbox")
    headers = ["ESCALATION", "CHANNEL", "EVENT", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "SENT", "LAST ERROR"]
    assert_fits_without_horizontal_scroll(browser, headers)
    assert_on_one_line(browser, ["event", "attempts", "next_attempt", "sent"])
