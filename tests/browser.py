"""Helpers for the admin's browser tests; the `browser` fixture (headless Chromium) is in conftest."""

import os
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

WIDTH, HEIGHT = 1400, 900
# Where the browser tests leave their screenshots (git-ignored): BROWSER_SCREENSHOTS, or <repo>/screenshots.
SCREENSHOTS = Path(os.environ.get("BROWSER_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "screenshots")


def log_in(driver, base_url: str, username: str, password: str, *, next_path: str = "/admin/") -> None:
    driver.get(f"{base_url}/admin/login/?next={next_path}")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "input[type=submit]"))


def follow(driver, element) -> None:
    """Click a link or a submit button and wait for the next page: until the page it was on has gone."""
    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 30).until(staleness_of(page))


def messages(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, ".messagelist").text


def fits_the_window(driver) -> bool:
    """No horizontal scroll bar: the page is no wider than the window's viewport, and a changelist's
    table does not scroll sideways inside its own box (the admin's `.results`)."""
    return driver.execute_script(
        "const results = document.querySelector('.results');"
        "return document.documentElement.scrollWidth <= window.innerWidth"
        " && (!results || results.scrollWidth <= results.clientWidth);"
    )


def screenshot(driver, name: str) -> Path:
    """The viewport as the operator sees it at WIDTH x HEIGHT, saved as SCREENSHOTS/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.set_window_size(WIDTH, HEIGHT)
    driver.save_screenshot(str(path))
    return path
