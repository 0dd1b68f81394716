"""The analytics lake: Delta Lake tables fed by the extract (see docs/architecture.md).

``Lake`` (store.py) is the storage, local or S3; ``extract`` (extract.py) copies the
sources (``sources/``) into it.
"""

from tierlake.lake.errors import ExtractError, LakeError, SourceError
from tierlake.lake.extract import ExtractConfig, ExtractInfo, extract
from tierlake.lake.store import Lake, TableInfo, describe_layout

__all__ = ["ExtractConfig", "ExtractError", "ExtractInfo", "Lake", "LakeError", "SourceError",
           "TableInfo", "describe_layout", "extract"]
