"""``GET /v1/products/{code}``: a product by barcode or SKU, for every role."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from edge_agent import catalog
from edge_agent.api.auth import require
from edge_agent.api.strict import StrictRoute

router = APIRouter(tags=["products"], route_class=StrictRoute)


@router.get("/v1/products/{code}", response_model=catalog.Product, dependencies=[Depends(require())])
async def get_product(request: Request, code: str = Path(min_length=1, max_length=64)) -> catalog.Product:
    """Price, promotion, store and online stock, rating and reviews of one product."""
    product = await request.app.state.agent.store.read(lambda conn: catalog.lookup(conn, code))
    if product is None:
        raise HTTPException(404, f"no product with barcode or SKU {code!r}")
    return product
