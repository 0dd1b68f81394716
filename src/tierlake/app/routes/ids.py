"""Path parameters shared by the routers."""

from typing import Annotated

from fastapi import Path

# Ids are bounded so a huge number is a 422, not an overflow in the database.
MAX_ID = 2**53
ProductId = Annotated[int, Path(ge=1, le=MAX_ID, description="Product id.")]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID, description="Order id.")]
