"""Counts in messages: "1 package", "2 packages", never "1 packages" nor "package(s)"."""

from __future__ import annotations

# Nouns whose plural is not the singular plus "s" (or "y" -> "ies"), as messages use them.
_IRREGULAR = {"bytes": "byte", "indexes": "index", "matches": "match", "classes": "class"}


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``count`` and the noun in the number it takes: ``plural(1, "wheel")`` is "1 wheel".

    ``many`` is the plural when it is not regular (``plural(n, "index", "indexes")``).
    """
    if count == 1:
        return f"1 {singular}"
    if many is None:
        many = singular[:-1] + "ies" if singular.endswith("y") and singular[-2:-1] not in "aeiou" else singular + "s"
    return f"{count} {many}"


def counted(count: int, many: str) -> str:
    """Like :func:`plural`, for a noun given in the plural: ``counted(1, "packages")`` is "1 package".

    For counts whose noun travels as a plural (a progress phase counts "wheels" or "layers").
    """
    if count != 1:
        return f"{count} {many}"
    if many in _IRREGULAR:
        return f"1 {_IRREGULAR[many]}"
    if many.endswith("ies"):
        return f"1 {many[:-3]}y"
    return f"1 {many[:-1]}" if many.endswith("s") and not many.endswith("ss") else f"1 {many}"
