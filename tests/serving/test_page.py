"""The page at / in a real headless browser (Debian's Chromium, driven by Selenium through
its chromedriver): it loads offline, shows the run, sends a prompt and shows the streamed
answer — the text `llmkit generate` gives."""

import shutil

import pytest
from live import LiveServer

from llmkit.commands.generate import run_generate
from llmkit.generation import DecodingOptions

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs chromium and chromedriver: apt-get install chromium chromium-driver",
)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # headless, as root in a container, and nothing fetched but the page's own server
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_page_streams_an_answer_equal_to_generate(trained_clm, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    prompt = "The game"
    options = DecodingOptions(max_new_tokens=12)
    [expected] = run_generate(str(trained_clm), [prompt], options, show=False)["results"]
    live = LiveServer(trained_clm)
    try:
        browser.get(live.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: d.find_element(By.ID, "title").text == "trained-clm")
        assert "generate" in browser.find_element(By.ID, "settings").text
        browser.find_element(By.ID, "prompt").send_keys(prompt)
        browser.find_element(By.ID, "max-tokens").send_keys("12")
        browser.find_element(By.ID, "send").click()
        answer = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, ".assistant[data-done='true']")
        )
        assert answer.text == (prompt + expected["completion"]).strip()
        assert browser.find_element(By.ID, "error").text == ""
    finally:
        live.stop()


def test_the_page_has_a_form_for_a_task_run(trained_mlm, browser):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    live = LiveServer(trained_mlm)
    try:
        browser.get(live.url + "/")
        wait = WebDriverWait(browser, 30)
        field = wait.until(lambda d: d.find_element(By.ID, "field-text"))
        assert "[MASK]" in field.get_attribute("placeholder")
        field.send_keys("The game was [MASK] in Japan .")
        browser.find_element(By.CSS_SELECTOR, "#task-form button").click()
        shown = wait.until(lambda d: d.find_element(By.ID, "result").text)
        answer = live.post("/v1/fill-mask", {"text": "The game was [MASK] in Japan ."}).json()
        assert json.loads(shown)["fills"] == answer["fills"]
    finally:
        live.stop()
