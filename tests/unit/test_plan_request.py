"""PlanRequest, the one request object every edge builds: its own checks, and the REST body's conversion."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from chiffon.orchestrator.api.bodies import PlanBody
from chiffon.orchestrator.console.asking import ConsoleRequest
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.request import PlanRequest, inventory_inside, limit_shape, tag_names
from chiffon.shared.errors import InvalidInput


def test_the_request_text_is_stripped_and_an_empty_one_is_refused_by_name() -> None:
    assert PlanRequest(request="  deploy redis \n").text() == "deploy redis"
    with pytest.raises(InvalidInput, match="request: is empty"):
        PlanRequest(request="   ").text()
    with pytest.raises(InvalidInput, match="request: is empty"):
        PlanRequest().text()


@pytest.mark.parametrize(("fields", "missing"), [({"apply_role": "kuma"}, "apply_to"),
                                                 ({"apply_to": "monitoring"}, "apply_role")])
def test_apply_role_without_apply_to_names_the_missing_half(fields: dict[str, str], missing: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{missing}: give both"):
        PlanRequest(request="deploy kuma", **fields).role_to_apply()


def test_apply_role_and_apply_to_together_are_the_role_to_apply() -> None:
    assert PlanRequest(request="x", apply_role="kuma", apply_to="mon").role_to_apply() == ("kuma", "mon")
    assert PlanRequest(request="x").role_to_apply() is None


def test_a_request_is_frozen_and_refuses_unknown_fields() -> None:
    asked = PlanRequest(request="deploy redis", limit="web1")
    with pytest.raises(pydantic.ValidationError):
        asked.limit = "all"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra_var"):
        PlanRequest(request="deploy redis", extra_var={"a": 1})  # type: ignore[call-arg]


@pytest.mark.parametrize(("check", "bad"), [(limit_shape, "web1;reboot"), (tag_names, ["ok", "b@d"]),
                                            (inventory_inside, "inventories/../../etc")])
def test_a_shape_check_refuses_what_is_not_a_limit_tag_or_inside_path(check, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        check(bad)


def test_the_rest_body_becomes_the_same_request_with_the_servers_repo() -> None:
    body = PlanBody(request="deploy redis", inventory="prod", limit="web1", tags=["redis"])
    assert body.plan_request(Path("/srv/iac")) == PlanRequest(request="deploy redis", repo=Path("/srv/iac"),
                                                              inventory="prod", limit="web1", tags=["redis"])


def test_the_rest_body_refuses_a_bad_limit_with_the_requests_own_message() -> None:
    with pytest.raises(pydantic.ValidationError, match="may contain only host/group names"):
        PlanBody(request="deploy redis", limit="web1;reboot")


def test_the_console_form_becomes_the_same_request_with_blanks_as_none() -> None:
    form = ConsoleRequest(request=" deploy redis ", repo="/srv/iac", inventory=" ", limit="", tags="redis, cache",
                          allowed=["/srv/iac"])
    assert form.plan_request() == PlanRequest(request="deploy redis", repo=Path("/srv/iac"), tags=["redis", "cache"])


def test_the_console_form_refuses_a_repo_it_does_not_know() -> None:
    with pytest.raises(InvalidInput, match="repo: pick one of the known repos"):
        ConsoleRequest(request="deploy redis", repo="/etc", allowed=["/srv/iac"]).plan_request()


async def test_create_plan_takes_a_request_or_its_fields_never_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        await plans.create_plan(None, None, "site.yml", PlanRequest(request="x"), limit="web1")  # type: ignore[arg-type]
