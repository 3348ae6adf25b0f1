"""The operator inbox in a real browser (headless Chromium): log in, acknowledge from the list,
resolve by uploading the finished work (docs/escalations.md)."""

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from agency.models import Task
from escalations.models import Escalation
from escalations.services import escalation_open
from tests.agency.factories import TaskFactory
from tests.conftest import in_ci

pytestmark = [pytest.mark.single_pass, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser():
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        if in_ci():
            pytest.fail("Chromium and ChromeDriver are required in CI (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def messages(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".messagelist").text


def test_an_operator_acknowledges_and_resolves_an_escalation_with_an_upload(
    browser, live_server, django_user_model, tmp_path
):
    django_user_model.objects.create_superuser("op", "op@example.com", "correct horse battery")
    task = TaskFactory(status="processing", title="Reconcile Q3", attempts=3, last_error="model timed out")
    escalation, _ = escalation_open(task=task, reason="attempts_exhausted", actor="pipeline")
    inbox = f"{live_server.url}/admin/escalations/escalation/"

    browser.get(f"{live_server.url}/admin/login/?next=/admin/escalations/escalation/")
    browser.find_element(By.NAME, "username").send_keys("op")
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    [row] = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert "Reconcile Q3" in row.text and "model timed out" in row.text and "Attempts Exhausted" in row.text
    row.find_element(By.NAME, "_selected_action").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("acknowledge")
    browser.find_element(By.NAME, "index").click()
    assert "1 escalation(s) acknowledged." in messages(browser)

    browser.get(f"{inbox}{escalation.pk}/change/")
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/resolve/']").click()
    Select(browser.find_element(By.NAME, "resolution")).select_by_value("completed_manually")
    browser.find_element(By.NAME, "note").send_keys("Reconciled by hand")
    work = tmp_path / "q3-reconciliation.csv"
    work.write_text("account,difference\n4000,0\n")
    browser.find_element(By.NAME, "deliverable").send_keys(str(work))
    browser.find_element(By.CSS_SELECTOR, "#resolve-form input[type=submit]").click()
    assert "resolved: completed_manually" in messages(browser)
    assert browser.current_url.endswith(f"/escalations/escalation/{escalation.pk}/change/")

    escalation.refresh_from_db()
    assert (escalation.status, escalation.resolution) == ("resolved", "completed_manually")
    assert escalation.events.filter(kind="resolved", detail="Reconciled by hand").exists()
    task = Task.objects.get(pk=task.pk)
    assert task.status == "completed"
    [deliverable] = task.deliverables.all()
    assert deliverable.name == "q3-reconciliation.csv" and deliverable.file.read() == work.read_bytes()
    assert not Escalation.objects.exclude(status="resolved").exists()
