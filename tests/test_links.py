"""A place acts on its referrals from the e-mail, with no account and no key: the e-mail from a
real SMTP server (aiosmtpd), its link opened through the real app, on both databases."""

import html
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.config import Settings
from app.services import links
from app.triage.rules import REASON_PLACE_PAUSED
from tests.conftest import PUBLIC_URL as PUBLIC
from tests.conftest import Mailbox, World, count, mail_settings, orientation_body
from tests.test_notifications import deliver


@pytest.fixture
def settings(mailbox: Mailbox) -> Settings:
    return mail_settings(mailbox)


def orient(client: TestClient, world: World, **changes: Any) -> dict[str, Any]:
    answer = client.post(
        "/v1/orientations", json=orientation_body(**changes), headers=world.auth("agent_tulle")
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def mails_to_the_place(
    engine: Engine, settings: Settings, mailbox: Mailbox, code: str
) -> list[Any]:
    deliver(engine, settings)
    return [m for to, m in mailbox.messages if code in str(m["Subject"])]


def link_of(message: Any) -> str:
    """The path of the link to act with, from the e-mail's text."""
    body = message.get_body(("plain",)).get_content()
    found = re.search(re.escape(PUBLIC) + r"(/lien/[A-Za-z0-9_\-.]+)\s", body)
    assert found, body
    return found.group(1)


def csrf_and_version(html: str) -> tuple[str, str]:
    csrf = re.search(r'name="csrf" value="([^"]+)"', html)
    version = re.search(r'name="version" value="(\d+)"', html)
    assert csrf, html[:300]
    return csrf.group(1), version.group(1) if version else ""


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything a step would change."""
    with engine.connect() as connection:
        tables = ("handoff_event", "contact_read", "outbox", "place_event", "idempotency_record")
        counts: dict[str, Any] = {t: count(engine, t) for t in tables}
        counts["referrals"] = sorted(
            connection.execute(text("SELECT id, status, version FROM referral")).all()
        )
        counts["places"] = sorted(
            connection.execute(
                text("SELECT id, paused_until, email, phone, hours FROM place")
            ).all()
        )
    return counts


def test_a_place_without_a_key_accepts_contacts_and_completes_from_its_email(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    sent = orient(client, world)["referral"]
    [mail] = mails_to_the_place(engine, settings, mailbox, sent["code"])
    path = link_of(mail)
    client.cookies.clear()  # the place has no session, no key

    page = client.get(path)
    assert page.status_code == 200 and sent["code"] in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "noindex" in page.headers["x-robots-tag"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # The contact data only on request: a mail scanner's GET never reads it.
    assert "0601020304" not in page.text and "Afficher ses coordonnées" in page.text
    assert count(engine, "contact_read") == 0
    csrf, version = csrf_and_version(page.text)
    shown = client.post(path + "/coordonnees", data={"csrf": csrf})
    assert shown.status_code == 200 and "0601020304" in shown.text
    with engine.connect() as connection:
        read = connection.execute(
            text("SELECT api_key_id, role, place_id, via FROM contact_read")
        ).one()
    assert read == (None, "mediateur", world.places["demo-med-tulle"], "POST /lien/{id}")

    # A step the page never offers: said in the page's words, nothing moves.
    before = snapshot(engine)
    wrong = client.post(
        path + "/statut", data={"csrf": csrf, "status": "telepathie", "version": version}
    )
    assert wrong.status_code == 422
    assert "Étape : choisissez une des valeurs proposées par la page." in html.unescape(wrong.text)
    assert snapshot(engine) == before
    for status in ("acceptee", "contactee", "terminee"):
        answer = client.post(
            path + "/statut",
            data={"csrf": csrf, "status": status, "version": version},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        page = client.get(answer.headers["location"])
        if status != "terminee":
            csrf, version = csrf_and_version(page.text)
    assert "Accompagnement terminé" in page.text
    assert "par le lien de l'e-mail" in page.text

    # The agent's side and the coordinator's figures see it.
    seen = client.get(f"/v1/referrals/{sent['id']}", headers=world.auth("agent_tulle")).json()
    assert seen["status"] == "terminee"
    events = client.get(
        f"/v1/referrals/{sent['id']}/events", headers=world.auth("agent_tulle")
    ).json()
    steps = [e for e in events if e["kind"] != "orientation"]
    assert [e["via"] for e in steps] == ["lien_email"] * 3
    assert {e["actor_place"]["id"] for e in steps} == {world.places["demo-med-tulle"]}
    figures = client.get("/v1/stats/referrals", headers=world.auth("coord")).json()["totals"]
    assert figures["acceptance_rate"] == 1.0 and figures["completion_rate"] == 1.0


def test_a_get_only_crawl_of_every_link_in_the_email_changes_nothing(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    """Mail security gateways open every link of an e-mail, and every link of those pages."""
    sent = orient(client, world)["referral"]
    [mail] = mails_to_the_place(engine, settings, mailbox, sent["code"])
    html = mail.get_body(("html",)).get_content()
    first = [h.replace(PUBLIC, "") for h in re.findall(r'href="([^"]+)"', html)]
    assert len(first) >= 2  # the referral's page and the place's page
    client.cookies.clear()
    before = snapshot(engine)
    seen: set[str] = set()
    queue = list(first)
    while queue and len(seen) < 40:
        path = queue.pop()
        if path in seen or not path.startswith("/"):
            continue
        seen.add(path)
        answer = client.get(path)
        assert answer.status_code < 500, path
        queue += [h for h in re.findall(r'href="(/[^"#]*)', answer.text) if "/static/" not in h]
    assert {p for p in seen if p.startswith("/lien/")} >= set(first)
    assert snapshot(engine) == before


def test_a_link_opens_and_acts_on_its_own_referral_only(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    one, other = orient(client, world)["referral"], orient(client, world)["referral"]
    paths = {}
    for referral in (one, other):
        [mail] = mails_to_the_place(engine, settings, mailbox, referral["code"])
        paths[referral["id"]] = link_of(mail)
    client.cookies.clear()
    page_one = client.get(paths[one["id"]]).text
    assert one["code"] in page_one and other["code"] not in page_one
    csrf_one, _ = csrf_and_version(page_one)
    # The form of one link posted to the other: refused, nothing moves.
    answer = client.post(
        paths[other["id"]] + "/statut",
        data={"csrf": csrf_one, "status": "acceptee", "version": "1"},
    )
    assert answer.status_code == 403
    # A link signed for another place: the referral is not that place's.
    with Session(engine) as session:
        secret = links.link_secret(session)
    forged = links.make_link(secret, one["id"], world.places["demo-med-ussel"])
    assert client.get(f"/lien/{forged}").status_code == 404
    # A tampered link: a French 404, and after many, 429 as for wrong keys.
    tampered = paths[one["id"]][:-3] + ("aaa" if not paths[one["id"]].endswith("aaa") else "bbb")
    answer = client.get(tampered)
    assert answer.status_code == 404 and "Ce lien ne correspond à aucune orientation" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    codes = {client.get(tampered).status_code for _ in range(25)}
    assert 429 in codes
    with engine.connect() as connection:
        statuses = connection.execute(text("SELECT status FROM referral")).scalars().all()
    assert set(statuses) == {"en_attente"}


def test_a_forwarded_link_after_the_referral_is_over_says_why(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    sent = orient(client, world)["referral"]
    [mail] = mails_to_the_place(engine, settings, mailbox, sent["code"])
    path = link_of(mail)
    client.post(
        f"/v1/referrals/{sent['id']}/events",
        json={"status": "refusee", "reason": "pas_de_capacite"},
        headers=world.auth("med_tulle"),
    )
    client.cookies.clear()
    # Within the grace period: the page, with nothing left to do.
    page = client.get(path)
    assert page.status_code == 200 and "Refusée" in page.text and 'name="status"' not in page.text
    # Long after: refused, saying why.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE referral SET updated_at = :at"),
            {"at": datetime.now(UTC) - timedelta(days=settings.link_grace_days + 1)},
        )
    page = client.get(path)
    assert page.status_code == 410 and "Orientation close" in page.text
    assert "ce lien ne sert plus" in page.text
    csrf = links.csrf_of(_secret(engine), links.read_link(_secret(engine), path[6:]))  # type: ignore[arg-type]
    answer = client.post(path + "/statut", data={"csrf": csrf, "status": "acceptee"})
    assert answer.status_code == 410


def _secret(engine: Engine) -> str:
    with Session(engine) as session:
        return links.link_secret(session)


def test_an_old_link_sends_a_fresh_one_to_the_places_address_only(
    client: TestClient, world: World, engine: Engine, mailbox: Mailbox
) -> None:
    settings = Settings(
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}", public_url=PUBLIC, link_days=1 / 86400
    )
    client.app.state.db.settings = settings  # type: ignore[attr-defined]
    sent = orient(client, world)["referral"]
    [mail] = mails_to_the_place(engine, settings, mailbox, sent["code"])
    path = link_of(mail)
    time.sleep(1.5)  # the link is now older than link_days
    client.cookies.clear()
    page = client.get(path)
    assert page.status_code == 200 and "Ce lien a expiré" in page.text
    assert 'name="status"' not in page.text
    csrf, _ = csrf_and_version(page.text)
    # An address typed in the form is never used: only the one on record.
    asked = client.post(path + "/nouveau-lien", data={"csrf": csrf, "email": "x@pirate.example"})
    assert "Un nouveau lien vient d'être envoyé" in asked.text
    fresh = mails_to_the_place(engine, settings, mailbox, sent["code"])[-1]
    assert "Nouveau lien" in str(fresh["Subject"])
    with engine.connect() as connection:
        on_record = connection.execute(
            text("SELECT email FROM place WHERE id = :id"), {"id": world.places["demo-med-tulle"]}
        ).scalar_one()
    assert [to for to, m in mailbox.messages if m is fresh] == [[on_record]]
    assert link_of(fresh) != path
    # A few an hour, no more.
    for _ in range(3):
        client.post(path + "/nouveau-lien", data={"csrf": csrf})
    assert count(engine, "outbox") <= 1 + links.NEW_LINKS_PER_HOUR


def test_a_paused_place_is_skipped_and_the_orientation_says_why(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    sent = orient(client, world)["referral"]
    [mail] = mails_to_the_place(engine, settings, mailbox, sent["code"])
    place_path = link_of(mail) + "/lieu"
    client.cookies.clear()
    page = client.get(place_path)
    assert page.status_code == 200 and "Gérer mon lieu" in page.text
    csrf, _ = csrf_and_version(page.text)
    until = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    answer = client.post(
        place_path,
        data={
            "csrf": csrf,
            "paused_until": until,
            "email": "nouvelle@mediatheque.example",
            "phone": "05 55 00 99 99",
            "hours": "Mo-Fr 09:00-12:00",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    page = client.get(answer.headers["location"])
    assert "Modifications enregistrées" in page.text and "ne reçoit pas de nouvelle" in page.text
    with engine.connect() as connection:
        fields = connection.execute(
            text("SELECT field, actor_via FROM place_event ORDER BY id")
        ).all()
    assert sorted(f for f, _ in fields) == ["email", "hours", "paused_until", "phone"]
    assert {via for _, via in fields} == {"lien_email"}

    again = orient(client, world)
    assert again["referral"]["place"]["id"] != world.places["demo-med-tulle"]
    assert REASON_PLACE_PAUSED in again["reasons"]
    # A wrong date is said on the field, and nothing is stored.
    before = snapshot(engine)
    answer = client.post(place_path, data={"csrf": csrf, "paused_until": "2020-01-01"})
    assert answer.status_code == 422 and "Ce jour est passé" in answer.text
    answer = client.post(place_path, data={"csrf": csrf, "email": "pas-une-adresse"})
    assert answer.status_code == 422
    assert snapshot(engine) == before
    # The pause lifted: the place receives again.
    client.post(place_path, data={"csrf": csrf, "paused_until": ""})
    assert orient(client, world)["referral"]["place"]["id"] == world.places["demo-med-tulle"]


def test_a_place_declares_its_capacity_from_its_email(
    client: TestClient, world: World, engine: Engine, settings: Settings, mailbox: Mailbox
) -> None:
    sent = orient(client, world)["referral"]
    [mail] = mails_to_the_place(engine, settings, mailbox, sent["code"])
    place_path = link_of(mail) + "/lieu"
    client.cookies.clear()
    csrf, _ = csrf_and_version(client.get(place_path).text)
    refused = client.post(place_path, data={"csrf": csrf, "capacity": "beaucoup"})
    assert refused.status_code == 422 and "Doit être un nombre entier" in refused.text
    answer = client.post(place_path, data={"csrf": csrf, "capacity": "1"}, follow_redirects=False)
    assert answer.status_code == 303
    # The place already has one open referral: it is full, the next goes elsewhere.
    again = orient(client, world)
    assert again["referral"]["place"]["id"] != world.places["demo-med-tulle"]
    assert "lieu_complet" in again["reasons"]
    with engine.connect() as connection:
        logged = connection.execute(
            text("SELECT new_value FROM place_event WHERE field = 'capacity'")
        ).scalar_one()
    assert logged == "1"
    client.post(place_path, data={"csrf": csrf, "capacity": ""})
    assert orient(client, world)["referral"]["place"]["id"] == world.places["demo-med-tulle"]
