"""Every endpoint fuzzed from the agent's own OpenAPI schema with schemathesis, over HTTP, against a real
agent process: no answer may be a 5xx.

Each operation gets valid requests (positive: what the schema allows, to
reach the code behind validation) and invalid ones (negative: what it
forbids), sent with the token of a role allowed to call it
(tests/support/matrix.py), so that they get past authentication. Random
codes and ids would almost never name anything, so half of the cases have
their codes, order, member and sale ids replaced by ones the store has: the
demo catalog, a pickup order and a member card from a real hub link, and a
few sales. Hypothesis runs derandomized: the same cases every run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra of pyproject.toml")
GenerationMode = schemathesis.GenerationMode

from support.agent import TOKENS
from support.flows import LIPSTICK, NUDE, TOTE, card, hub_event, linked_agent, order, sale, sync_point
from support.matrix import MATRIX

EXAMPLES = 30  # per operation and mode
CODES = [LIPSTICK, NUDE, TOTE, "TOTE-CANVAS", "GLS-ROUND-BLK"]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    with linked_agent(tmp_path_factory.mktemp("fuzz")) as (agent, hub):
        hub.send("orders", [hub_event("retail.order.created", order("WEB-1"))])
        hub.send("members", [hub_event("retail.member.card", card("M-1001"))])
        sync_point(hub, "seeded")
        with agent.client("associate") as c:
            sales = [c.post("/v1/sales", json=sale((code, 3), member_id="M-1001")).json()["id"] for code in CODES]
        yield agent, {"codes": CODES, "sales": sales, "orders": ["WEB-1"], "members": ["M-1001"]}


def known(case: Any, pick: Any, seeds: dict[str, list[str]]) -> Any:
    """``case`` with its codes and ids replaced by ones the store has (where it has such fields)."""
    body = case.body
    if isinstance(body, dict):
        body = dict(body)
        if isinstance(body.get("lines"), list):
            body["lines"] = [{**ln, "code": pick(seeds["codes"])} if isinstance(ln, dict) else ln
                             for ln in body["lines"]]
        for key, pool in (("code", "codes"), ("sale", "sales"), ("order_id", "orders"), ("member_id", "members")):
            if key in body:
                body[key] = pick(seeds[pool])
        case.body = body
    params = dict(case.path_parameters or {})
    for key, pool in (("code", "codes"), ("order_id", "orders"), ("member_id", "members")):
        if key in params:
            params[key] = pick(seeds[pool])
    case.path_parameters = params
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_endpoint_answers_5xx(target, mode):
    agent, seeds = target
    schema = schemathesis.openapi.from_url(f"{agent.url}/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in ops} >= set(MATRIX)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for op in ops:
        fuzz(agent, op, mode, seeds, failures, statuses)
    assert failures == [], "\n".join(failures[:20]) + f"\n\nagent log:\n{agent.log()[-3000:]}"
    if mode == GenerationMode.POSITIVE:
        # Valid cases got past authentication and, many of them, past validation. (Negative cases
        # include a negated security scheme: their 401s are expected.)
        assert statuses[401] == 0 and sum(n for s, n in statuses.items() if s < 300) > 100, statuses
    with agent.client() as c:
        assert c.get("/v1/health").status_code == 200


def fuzz(agent, op, mode: GenerationMode, seeds: dict[str, list[str]], failures: list[str],
         statuses: Counter[int]) -> None:
    """Call ``op`` with EXAMPLES generated cases as an allowed role; note every 5xx in ``failures``."""
    key = (op.method.upper(), op.path)
    role = sorted(MATRIX[key])[0] if key in MATRIX else None
    token = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    cases = op.as_strategy(generation_mode=mode)
    strategy = st.one_of(cases, st.tuples(cases, st.data()).map(
        lambda pair: known(pair[0], lambda pool: pair[1].draw(st.sampled_from(pool)), seeds)))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def probe(case) -> None:
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        response = case.call(base_url=agent.url, headers={**headers, **token}, timeout=60)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{key[0]} {case.formatted_path} -> {response.status_code}: "
                            f"{response.text[:300]} (body {str(case.body)[:300]})")

    try:
        probe()
    except Unsatisfiable:
        pass  # nothing to make invalid (negative mode on a call without parameters or body)
