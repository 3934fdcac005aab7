"""pytest-stockroom: each test takes its own datasets from a Stockroom pool.

See docs/plugins/pytest.md. The plugin itself is :mod:`pytest_stockroom.plugin`
(registered through the ``pytest11`` entry point); this package also offers the
agent client and the datasets-file reader for code outside pytest.
"""

from .client import (
    AgentClient,
    AgentGone,
    NoAgent,
    NoStock,
    StockroomError,
    Take,
    Unauthorized,
    UnknownState,
)
from .dataset import Dataset, Secret
from .jobfile import JobDatasets, datasets

__all__ = [
    "AgentClient",
    "AgentGone",
    "Dataset",
    "JobDatasets",
    "NoAgent",
    "NoStock",
    "Secret",
    "StockroomError",
    "Take",
    "Unauthorized",
    "UnknownState",
    "datasets",
]
__version__ = "0.1.0"
