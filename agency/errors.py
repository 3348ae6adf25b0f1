"""Domain errors that services raise and every adapter maps the same way."""


class DomainError(Exception):
    """A request the domain refuses; the API answers 409."""

    code = "conflict"

    def __init__(self, message: str, *, existing_id: object | None = None):
        super().__init__(message)
        self.existing_id = existing_id
