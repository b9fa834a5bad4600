"""Whether an error is an interruption (Ctrl-C, SIGTERM) under another name."""

from __future__ import annotations


def interruption_in(error: BaseException) -> KeyboardInterrupt | None:
    """The interruption behind `error`, if any.

    A library whose clean-up fails after a KeyboardInterrupt raised inside it (SQLAlchemy
    rolling back a commit the signal cut, on a database still locked) raises its own error
    instead, with the interruption as its cause or context: the trial was still interrupted."""
    seen: set[int] = set()
    cursor: BaseException | None = error
    while cursor is not None and id(cursor) not in seen:
        if isinstance(cursor, KeyboardInterrupt):
            return cursor
        seen.add(id(cursor))
        cursor = cursor.__cause__ or cursor.__context__
    return None
