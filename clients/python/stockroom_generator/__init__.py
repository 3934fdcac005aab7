"""Stockroom generator SDK: declare the states your team can make, write one
function per state, and serve them to the pool over HTTP or as a command.

    from stockroom_generator import Generator
    gen = Generator()

    @gen.produces("customer", "active", fields=["customer_id"])
    def make_customer(req):
        return gen.dataset(data={"customer_id": "C1"}, entities=["customer:C1"])

    if __name__ == "__main__":
        gen.main()

See docs/generators.md. Standard library only.
"""

from ._generator import MAX_ANSWER_BYTES, Generator, Outcome
from ._model import Answer, Dataset, DeclarationError, Refuse, Request, Requirement
from ._transport import make_server

__all__ = [
    "MAX_ANSWER_BYTES",
    "Answer",
    "Dataset",
    "DeclarationError",
    "Generator",
    "Outcome",
    "Refuse",
    "Request",
    "Requirement",
    "make_server",
]
