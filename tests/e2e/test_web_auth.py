"""Signing in to the web UI in headless Chromium against a real ``python -m visionatrix run`` with ``VIX_AUTH=on``:
the sign-in page and its wrong-password message, each user seeing only their own tasks (list and pushed events),
a user without the admin controls and an admin with them, signing out, a session that ends behind the page's back,
``next`` back to the graph editor (and a foreign one ignored), an API token created and revoked on the account page
and used from Python, and a password change."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.browser import chromium
from tests.e2e.service import Service, running_service
from tests.e2e.test_web_ui import DESKTOP, RUN_TIMEOUT_MS, SERVICE_ENV, Watch, screenshot
from visionatrix.auth.store import AuthStore
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine

pytestmark = pytest.mark.slow

USERS = {"ada": ("ada-password-1", True), "bob": ("bob-password-1", False), "cleo": ("cleo-password-1", False),
         "dan": ("dan-password-1", False)}


async def create_users(database: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await migrate.upgrade(engine)
        store = AuthStore(engine)
        for name, (password, admin) in USERS.items():
            await store.create_user(name, password, admin=admin)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """DEFAULT mode on 127.0.0.1 with sign-in on, its users created on its database before it starts."""
    workdir = tmp_path_factory.mktemp("web_auth")
    asyncio.run(create_users(workdir / "visionatrix.db"))
    with running_service(workdir, {**SERVICE_ENV, "VIX_AUTH": "on"}) as service:
        yield service


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def call(url: str, method: str = "GET", token: str | None = None) -> int:
    """The status of ``method url`` from Python, with ``Authorization: Bearer token`` when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:  # its response holds the connection
            return int(error.code)


async def new_page(browser: Browser, watch: Watch, path: str = "/") -> tuple[BrowserContext, Page]:
    """A fresh browser (its own cookies) at ``path``."""
    context = await browser.new_context(viewport=DESKTOP)
    page = watch.watch(await context.new_page())
    await page.goto(f"{watch.origin}{path}")
    return context, page


async def sign_in(page: Page, name: str, password: str | None = None) -> None:
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(password or USERS[name][0])
    await page.get_by_role("button", name="Sign in").click()


async def signed_in_ui(page: Page, name: str) -> None:
    await sign_in(page, name)
    await expect(page.locator("#account-name")).to_have_text(name)
    await expect(page.locator("#live-state")).to_have_text("Live")


async def queue_gray(page: Page) -> int:
    """Runs the cheap e2e_gray flow from its form; the new task's id once the queue shows it finished."""
    await page.goto(f"{urlsplit(page.url)._replace(fragment='').geturl()}#/run/e2e_gray")
    await page.get_by_role("button", name="Queue").click()
    queued = page.get_by_role("status").filter(has_text="Queued task #")
    await expect(queued).to_be_visible()
    task_id = int(re.search(r"#(\d+)", await queued.inner_text()).group(1))  # type: ignore[union-attr]
    await queued.get_by_role("link", name="See it in the queue").click()
    await expect(page.locator(f"#task-{task_id}")).to_have_attribute("data-status", "finished",
                                                                     timeout=RUN_TIMEOUT_MS)
    return task_id


async def test_users_sign_in_and_see_only_their_own_tasks_and_controls(auth_service: Service,
                                                                       browser: Browser) -> None:
    url = auth_service.url
    assert call(f"{url}/vapi/tasks") == 401

    # Cleo signs in first and watches her queue while Bob's task runs: nothing of it may reach her.
    cleo_watch = Watch(url)
    cleo_context, cleo = await new_page(browser, cleo_watch, "/#/queue")
    await expect(cleo.get_by_role("navigation", name="Pages")).to_be_hidden()
    await signed_in_ui(cleo, "cleo")
    await expect(cleo.get_by_role("heading", name="Queue")).to_be_visible()

    bob_watch = Watch(url)
    bob_context, bob = await new_page(browser, bob_watch)
    await expect(bob.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(bob, "login")
    bob_watch.expect_failure("POST", "/vapi/auth/login", 401)
    await sign_in(bob, "bob", "not-his-password")
    await expect(bob.get_by_role("alert")).to_have_text("Wrong user name or password.")
    await expect(bob.get_by_label("Password")).to_have_value("")
    await signed_in_ui(bob, "bob")
    await expect(bob.locator("#account-role")).to_have_text("user")
    await expect(bob.get_by_role("button", name="Sign out")).to_be_visible()
    card = bob.locator("article.card[data-flow=e2e_gray]")
    await expect(card.get_by_role("link", name="Run e2e gray")).to_be_visible()
    # No admin controls: no Workers page, no flow upload, install or delete, no workers line.
    await expect(bob.get_by_role("link", name="Workers", exact=True)).to_be_hidden()
    await expect(bob.get_by_role("heading", name="Add a flow")).to_have_count(0)
    await expect(bob.locator("[data-action=remove]")).to_have_count(0)
    await expect(card.locator("[data-workers-of]")).to_have_count(0)
    await bob.goto(f"{url}/#/workers")  # typed by hand: the flows page instead
    await expect(bob.get_by_role("heading", name="Flows", exact=True)).to_be_visible()
    await expect(card.get_by_role("link", name="Run e2e gray")).to_be_visible()
    await screenshot(bob, "flows_user")

    bob_task = await queue_gray(bob)
    await screenshot(bob, "queue_user")
    assert bob_watch.events_of("task_finished", bob_task)
    await cleo.get_by_role("button", name="Reload").click()
    await expect(cleo.get_by_text("No tasks here yet.")).to_be_visible()
    await expect(cleo.locator(f"#task-{bob_task}")).to_have_count(0)
    cleo_task = await queue_gray(cleo)
    await expect(cleo.locator("tr[id^=task-]")).to_have_count(1)
    # Her page's one socket carried her task's events and none of Bob's.
    assert cleo_watch.events_of("task_finished", cleo_task)
    assert not [frame for frame in cleo_watch.frames if json.loads(frame).get("task_id") == bob_task], \
        cleo_watch.frames
    await expect(bob.locator(f"#task-{cleo_task}")).to_have_count(0)

    # The admin sees both tasks and the admin controls.
    ada_watch = Watch(url)
    ada_context, ada = await new_page(browser, ada_watch)
    await signed_in_ui(ada, "ada")
    await expect(ada.locator("#account-role")).to_have_text("admin")
    await expect(ada.get_by_role("heading", name="Add a flow")).to_be_visible()
    await expect(ada.locator("article.card[data-flow=e2e_gray] [data-action=remove]")).to_be_visible()
    await expect(ada.locator("article.card[data-flow=e2e_gray] [data-workers-of]")).not_to_be_empty()
    await ada.get_by_role("link", name="Workers", exact=True).click()
    await expect(ada.locator("table.workers tbody tr")).to_have_count(1)
    await ada.get_by_role("link", name="Queue", exact=True).click()
    await expect(ada.locator(f"#task-{bob_task}")).to_be_visible()
    await expect(ada.locator(f"#task-{cleo_task}")).to_be_visible()

    # Bob signs out: the sign-in page, and his browser's API calls answer 401.
    await bob.get_by_role("button", name="Sign out").click()
    await expect(bob.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(bob.get_by_role("navigation", name="Pages")).to_be_hidden()
    assert (await bob.request.get(f"{url}/vapi/tasks")).status == 401
    assert await bob.evaluate("async () => (await fetch('vapi/auth/me')).json()") == {
        "auth_required": True, "user": None, "role": "anonymous", "via": "none"}

    # Cleo's session ends behind the page's back: her next call answers 401 and the sign-in page comes back.
    assert (await cleo.request.post(f"{url}/vapi/auth/logout")).status == 204
    cleo_watch.expect_failure("GET", "/vapi/flows", 401)
    await cleo.evaluate("() => { location.hash = '#/flows'; }")
    await expect(cleo.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(cleo.get_by_role("status").filter(has_text="Your session ended")).to_be_visible()
    await expect(cleo.get_by_role("alert")).to_have_count(0)  # no "Could not load the flows" on top

    for watch in (bob_watch, cleo_watch, ada_watch):
        watch.check()
    for context in (bob_context, cleo_context, ada_context):
        await context.close()


async def test_an_api_token_made_on_the_account_page_works_until_revoked(auth_service: Service,
                                                                         browser: Browser) -> None:
    url = auth_service.url
    watch = Watch(url)
    context, page = await new_page(browser, watch)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    await signed_in_ui(page, "bob")
    await page.get_by_role("link", name="My account").click()
    await expect(page.get_by_role("heading", name="My API tokens")).to_be_visible()
    await expect(page.get_by_text("You have no API token yet.")).to_be_visible()
    await page.get_by_label("Token name").fill("nightly script")
    await page.get_by_role("button", name="Create token").click()
    await expect(page.get_by_text("it is not shown again")).to_be_visible()
    secret = await page.get_by_label("New API token").input_value()
    assert secret and secret not in page.url
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("() => navigator.clipboard.readText()") == secret
    row = page.locator("tr[data-token]")
    await expect(row).to_have_count(1)
    await expect(row).to_have_attribute("data-state", "active")
    await screenshot(page, "account_token")

    me = f"{url}/vapi/auth/me"
    assert call(f"{url}/vapi/tasks", token=secret) == 200
    assert call(f"{url}/vapi/workers", token=secret) == 403  # a user's token is not an admin's
    request = urllib.request.Request(me, headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert b'"name":"bob"' in answer.read().replace(b" ", b"")

    # Shown once: after a reload only the list remains.
    await page.reload()
    await expect(row).to_have_count(1)
    await expect(page.get_by_label("New API token")).to_have_count(0)
    assert secret not in await page.content()

    await page.get_by_role("button", name="Revoke nightly script").click()
    await page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    await expect(row).to_have_attribute("data-state", "revoked")
    assert call(f"{url}/vapi/tasks", token=secret) == 401
    watch.check()
    await context.close()


async def test_a_password_change_signs_out_and_the_new_password_signs_in(auth_service: Service,
                                                                         browser: Browser) -> None:
    watch = Watch(auth_service.url)
    context, page = await new_page(browser, watch, "/#/account")
    await signed_in_ui(page, "dan")
    await expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    watch.expect_failure("POST", "/vapi/auth/password", 400)
    await page.get_by_label("Current password").fill("wrong-password")
    await page.get_by_label("New password (8 characters or more)").fill("dan-password-2")
    await page.get_by_label("Repeat the new password").fill("dan-password-2")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("alert")).to_have_text("The current password is wrong.")
    await page.get_by_label("Current password").fill(USERS["dan"][0])
    await page.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("status").filter(has_text="Your password is changed")).to_be_visible()
    watch.expect_failure("POST", "/vapi/auth/login", 401)
    await sign_in(page, "dan")
    await expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    await sign_in(page, "dan", "dan-password-2")
    await expect(page.locator("#account-name")).to_have_text("dan")
    watch.check()
    await context.close()


async def test_next_leads_back_to_the_graph_editor_and_a_foreign_next_is_ignored(auth_service: Service,
                                                                                 browser: Browser) -> None:
    url = auth_service.url
    watch = Watch(url)
    context, page = await new_page(browser, watch, "/?next=/comfy/")
    checks = await page.evaluate("""async () => {
        const { nextPath } = await import("./ui/session.js");
        return ["?next=/comfy/", "?next=//evil.example/", "?next=/\\\\evil.example/", "?next=https://evil.example/",
                "?next=comfy/", "?next=/%0A/evil", "", "?next=/comfy/?vix_flow=a#x"].map(nextPath);
    }""")
    assert checks == ["/comfy/", None, None, None, None, None, None, "/comfy/?vix_flow=a#x"], checks
    await sign_in(page, "ada")
    await page.wait_for_url(f"{url}/comfy/")
    await context.close()

    context, page = await new_page(browser, Watch(url), "/?next=//evil.example/")
    await signed_in_ui(page, "ada")
    assert urlsplit(page.url).netloc == urlsplit(url).netloc
    await expect(page.get_by_role("heading", name="Flows", exact=True)).to_be_visible()
    await context.close()


async def test_too_many_failed_sign_ins_say_how_long_to_wait(auth_service: Service, browser: Browser) -> None:
    url = auth_service.url
    watch = Watch(url)
    context, page = await new_page(browser, watch)
    for _ in range(10):  # the per-user limit, for a name nobody has (the address limit is 20)
        answer = await page.request.post(f"{url}/vapi/auth/login", data={"name": "nobody", "password": "guess"})
        assert answer.status == 401, await answer.text()
    watch.expect_failure("POST", "/vapi/auth/login", 429)
    await sign_in(page, "nobody", "guess")
    await expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^Too many failed sign-ins\. Try again in \d+ seconds\.$"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    watch.check()
    await context.close()

def test_the_graph_editor_sends_an_anonymous_visitor_to_sign_in(auth_service: Service) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(f"{auth_service.url}/comfy/", timeout=10)
    with answer.value:  # its response holds the connection
        assert answer.value.code == 302
        assert answer.value.headers["Location"] == "/?next=/comfy/"
