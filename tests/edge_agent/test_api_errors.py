"""The one mapping of the domain's errors to HTTP (edge_agent/api/errors.py): every flow's error keeps the status
the API has always answered it with, the kind named first wins, and Retry-After comes from the error."""

from __future__ import annotations

import json

import pytest

from edge_agent import orders, returns, sales, sessions, stock
from edge_agent.api.errors import answer, status_of
from edge_agent.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooMany, Unavailable
from edge_agent.labels.bindings import BindConflict, BindError, BindInvalid, BindNotFound
from edge_agent.usecases import tryon

STATUS = [
    (sales.SaleConflict, 409), (sales.SaleRejected, 422),
    (returns.ReturnError, 422), (returns.ReturnNotFound, 404), (returns.ReturnConflict, 409),
    (orders.OrderError, 409), (orders.OrderNotFound, 404), (orders.CodeRequired, 422), (orders.CodeLocked, 429),
    (orders.OrderRejected, 422), (orders.WrongCode, 403),
    (sessions.BasketError, 409), (sessions.UnknownProduct, 422), (sessions.NoKiosk, 404),
    (tryon.NotTryOn, 422), (tryon.MirrorBasketError, 409), (tryon.TryOnUnavailable, 503),
    (stock.AdjustmentConflict, 409), (stock.UnknownProduct, 404),
    (BindInvalid, 422), (BindConflict, 409), (BindNotFound, 404),
    (NotFound, 404), (Conflict, 409), (Invalid, 422), (Forbidden, 403), (Unavailable, 503), (TooMany, 429),
]


@pytest.mark.parametrize(("cls", "status"), STATUS, ids=[c.__qualname__ for c, _ in STATUS])
def test_each_flow_error_answers_its_status_with_its_message(cls: type[DomainError], status: int) -> None:
    err = cls("what went wrong; how to fix it")
    assert status_of(err) == status
    response = answer(err)
    assert response.status_code == status
    assert json.loads(response.body) == {"detail": "what went wrong; how to fix it"}
    assert "retry-after" not in response.headers


def test_a_flow_error_stays_catchable_by_its_flow_base() -> None:
    # A router or a caller that catches the flow's own base still catches every kind of it.
    assert issubclass(orders.CodeLocked, orders.OrderError) and issubclass(orders.WrongCode, orders.OrderError)
    assert issubclass(returns.ReturnNotFound, returns.ReturnError)
    assert issubclass(BindNotFound, BindError) and issubclass(sessions.UnknownProduct, sessions.BasketError)
    assert issubclass(stock.UnknownProduct, LookupError)


def test_too_many_says_when_to_retry_when_it_knows() -> None:
    err = orders.CodeLocked("order 1 takes no code for now")
    assert "retry-after" not in answer(err).headers
    err.retry_after = 17
    response = answer(err)
    assert response.status_code == 429 and response.headers["retry-after"] == "17"


def test_a_domain_error_of_no_kind_is_unprocessable() -> None:
    assert status_of(DomainError("no kind")) == 422
