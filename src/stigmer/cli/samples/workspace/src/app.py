"""A small program with work left to do (the find-todos example reads it)."""


def greet(name: str) -> str:
    # TODO: greet in the user's language
    return f"Hello, {name}!"


def farewell(name: str) -> str:
    # FIXME: this is not a farewell
    return greet(name)
